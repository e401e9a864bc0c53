//! Client identities (the `identity` of an Access Token, the name in `client:<name>`) as
//! Twilio accepts them.
//!
//! Twilio's rule, error 31105 "Invalid client name": no control, space, delims or unwise
//! characters, and at most 256 characters; error 54351: at least one. The character classes
//! are RFC 2396's (§2.4.3): delims `< > # % "`, unwise `{ } | \ ^ [ ] \``. Written here
//! rather than taken from a crate: it is that one rule, and no crate states it.

/// Twilio's longest identity (error 31105).
pub const MAX_CHARS: usize = 256;

/// Why Twilio would refuse an identity, in words a client developer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity is empty (Twilio error 54351)")]
    Empty,
    #[error("the identity is {0} characters long; Twilio allows at most 256 (error 31105)")]
    TooLong(usize),
    #[error(
        "the identity has {what} {found:?} at character {position}; Twilio refuses control, space, delimiter and unwise characters (error 31105)"
    )]
    Forbidden {
        what: &'static str,
        found: char,
        /// 1-based, in characters.
        position: usize,
    },
}

/// Checks `identity` against Twilio's rule.
pub fn check(identity: &str) -> Result<(), IdentityError> {
    if identity.is_empty() {
        return Err(IdentityError::Empty);
    }
    let chars = identity.chars().count();
    if chars > MAX_CHARS {
        return Err(IdentityError::TooLong(chars));
    }
    for (index, c) in identity.chars().enumerate() {
        let what = if c.is_control() {
            "a control character"
        } else if c.is_whitespace() {
            // RFC 2396's "space" is U+0020; other Unicode spaces are refused too, as no
            // client can type them in a `client:` name reliably.
            "a space"
        } else if matches!(c, '<' | '>' | '#' | '%' | '"') {
            "a delimiter"
        } else if matches!(c, '{' | '}' | '|' | '\\' | '^' | '[' | ']' | '`') {
            "an unwise character"
        } else {
            continue;
        };
        return Err(IdentityError::Forbidden {
            what,
            found: c,
            position: index + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_identity_providers_issue() {
        for ok in [
            "alice",
            "alice@example.com",
            "auth0_abc123",
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "us-east-1:9b1c4f3e-0000-4000-8000-000000000000",
            "José",
            &"a".repeat(256),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_twilio_refuses_with_the_reason() {
        assert_eq!(check(""), Err(IdentityError::Empty));
        assert_eq!(check(&"a".repeat(257)), Err(IdentityError::TooLong(257)));
        let cases = [
            ("auth0|abc", '|', 6, "an unwise character"),
            ("alice smith", ' ', 6, "a space"),
            ("a\tb", '\t', 2, "a control character"),
            ("100%", '%', 4, "a delimiter"),
            ("<script>", '<', 1, "a delimiter"),
            ("a\u{7f}", '\u{7f}', 2, "a control character"),
            ("[x]", '[', 1, "an unwise character"),
        ];
        for (identity, found, position, what) in cases {
            assert_eq!(
                check(identity),
                Err(IdentityError::Forbidden {
                    what,
                    found,
                    position
                }),
                "{identity:?}"
            );
        }
        let reason = check("auth0|abc").unwrap_err().to_string();
        assert!(reason.contains("'|' at character 6"), "{reason}");
    }
}
