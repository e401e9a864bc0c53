//! Voice Access Tokens for browser and mobile softphones (`POST /softphone/token`).
//!
//! API Gateway's JWT authorizer has already checked the caller's bearer token against the
//! configured issuer and audience, and passes its claims on; one of them (`sub` unless
//! configured) is the softphone's identity. The token minted here is Twilio's Access Token:
//! a JWT signed HS256 with an API key's secret, as twilio-python's `AccessToken` with a
//! `VoiceGrant` makes it (`twilio/jwt/access_token`, 9.13): header `cty: twilio-fpa;v=1`,
//! `iss` the API key SID, `sub` the Account SID, `jti` `<key sid>-<issued at>`, `nbf` the
//! issue time, `exp` issue time + TTL, and `grants.identity` with `grants.voice`.
//!
//! The JWT is written here, not with a JWT crate: it is one fixed HS256 shape, made from the
//! HMAC, base64 and JSON crates every function already links, where `jsonwebtoken` would add
//! RSA and elliptic-curve code to a bootstrap whose size and cold start are budgeted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use serde::Serialize;
use sha2::Sha256;

use crate::secrets::{AuthTokens, TwilioCredentials};
use crate::twilio::identity;
use crate::webhook::Reply;

/// The route API Gateway serves this function on.
pub const TOKEN_PATH: &str = "/softphone/token";
/// How long a token lives when nothing is configured: long enough for a call to be set up,
/// short enough that a leaked one is soon useless (the Voice SDK refreshes before expiry).
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Twilio's limit: an Access Token lives at most 24 hours.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The parts of a Voice Access Token.
#[derive(Debug, Clone)]
pub struct VoiceToken<'a> {
    pub account_sid: &'a str,
    pub api_key_sid: &'a str,
    pub twiml_app_sid: &'a str,
    pub identity: &'a str,
    /// Seconds since the epoch.
    pub issued_at: u64,
    pub ttl: Duration,
}

// Fields in the order twilio-python writes them (PyJWT sorts the header's keys; the claims
// keep the library's insertion order), so the same inputs give the same token, byte for byte.
#[derive(Serialize)]
struct Header {
    alg: &'static str,
    cty: &'static str,
    typ: &'static str,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: String,
    grants: Grants<'a>,
    iss: &'a str,
    exp: u64,
    nbf: u64,
    sub: &'a str,
}

#[derive(Serialize)]
struct Grants<'a> {
    voice: Voice<'a>,
    identity: &'a str,
}

#[derive(Serialize)]
struct Voice<'a> {
    incoming: Incoming,
    outgoing: Outgoing<'a>,
}

#[derive(Serialize)]
struct Incoming {
    allow: bool,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    application_sid: &'a str,
}

impl VoiceToken<'_> {
    /// Seconds since the epoch at which the token expires.
    pub fn expires_at(&self) -> u64 {
        self.issued_at + self.ttl.as_secs()
    }

    /// The signed JWT.
    pub fn sign(&self, api_key_secret: &str) -> String {
        let header = Header {
            alg: "HS256",
            cty: "twilio-fpa;v=1",
            typ: "JWT",
        };
        let claims = Claims {
            jti: format!("{}-{}", self.api_key_sid, self.issued_at),
            grants: Grants {
                voice: Voice {
                    incoming: Incoming { allow: true },
                    outgoing: Outgoing {
                        application_sid: self.twiml_app_sid,
                    },
                },
                identity: self.identity,
            },
            iss: self.api_key_sid,
            exp: self.expires_at(),
            nbf: self.issued_at,
            sub: self.account_sid,
        };
        let signing_input = format!("{}.{}", jwt_part(&header), jwt_part(&claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(api_key_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }
}

/// One base64url part of a JWT.
fn jwt_part(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(value).expect("plain structs of strings and numbers serialize"))
}

/// How tokens are minted: which claim names the identity, and for how long.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub identity_claim: String,
    pub ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            identity_claim: "sub".into(),
            ttl: DEFAULT_TTL,
        }
    }
}

/// What the client receives.
#[derive(Debug, Serialize)]
struct Minted<'a> {
    token: String,
    identity: &'a str,
    /// RFC 3339, UTC.
    expires_at: String,
}

/// The function's logic: claims in, an Access Token or a reason out.
pub struct TokenIssuer<T> {
    tokens: T,
    settings: TokenSettings,
}

impl<T: AuthTokens> TokenIssuer<T> {
    pub fn new(tokens: T, settings: TokenSettings) -> Self {
        Self { tokens, settings }
    }

    /// Answers a request whose authorizer passed `claims` (`None`: no authorizer ran).
    pub async fn answer(
        &self,
        method: &Method,
        claims: Option<&HashMap<String, String>>,
        now: SystemTime,
    ) -> Reply {
        if method != Method::POST {
            let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            reply.headers.push(("allow", "POST"));
            return reply;
        }
        // API Gateway never invokes the route without them; a function reached some other
        // way (a misrouted URL) must not mint for nobody.
        let Some(claims) = claims else {
            return error(StatusCode::UNAUTHORIZED, "no authorizer claims");
        };
        let claim = &self.settings.identity_claim;
        let Some(identity) = claims.get(claim) else {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the bearer token has no {claim:?} claim to take the identity from"),
            );
        };
        if let Err(why) = identity::check(identity) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("claim {claim:?} is not an identity Twilio accepts: {why}"),
            );
        }
        let credentials = match self.tokens.current().await {
            Ok(credentials) => credentials,
            Err(e) => {
                tracing::error!(error = %e, "no Twilio secret to mint softphone tokens with");
                let mut reply = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Twilio credentials cannot be read now; try again shortly",
                );
                reply.headers.push(("retry-after", "5"));
                return reply;
            }
        };
        let Some((api_key_sid, api_key_secret, twiml_app_sid)) = token_parts(&credentials) else {
            tracing::error!(
                "the Twilio secret lacks api_key_sid, api_key_secret or twiml_app_sid; softphone tokens need all three"
            );
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "softphone tokens are not configured on this stack",
            );
        };
        let issued_at = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let token = VoiceToken {
            account_sid: &credentials.account_sid,
            api_key_sid,
            twiml_app_sid,
            identity,
            issued_at,
            ttl: self.settings.ttl,
        };
        let minted = Minted {
            token: token.sign(api_key_secret),
            identity,
            expires_at: rfc3339(token.expires_at()),
        };
        tracing::info!(
            identity,
            expires_at = %minted.expires_at,
            "softphone token minted"
        );
        json_reply(StatusCode::OK, &minted)
    }
}

fn token_parts(credentials: &TwilioCredentials) -> Option<(&str, &str, &str)> {
    Some((
        credentials.api_key_sid.as_deref()?,
        credentials.api_key_secret.as_deref()?,
        credentials.twiml_app_sid.as_deref()?,
    ))
}

fn rfc3339(unix: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Reply {
    Reply {
        status,
        content_type: Some("application/json"),
        // A token is a credential: no cache may keep it.
        headers: vec![("cache-control", "no-store")],
        body: serde_json::to_string(body).expect("a map of strings serializes"),
    }
}

fn error(status: StatusCode, reason: &str) -> Reply {
    json_reply(status, &serde_json::json!({ "error": reason }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::StaticTokens;

    fn credentials() -> TwilioCredentials {
        let mut c = TwilioCredentials::new("AC00000000000000000000000000000001", "token");
        c.api_key_sid = Some("SK00000000000000000000000000000001".into());
        c.api_key_secret = Some("key-secret".into());
        c.twiml_app_sid = Some("AP00000000000000000000000000000001".into());
        c
    }

    fn issuer(credentials: TwilioCredentials) -> TokenIssuer<StaticTokens> {
        TokenIssuer::new(
            StaticTokens {
                current: Arc::new(credentials),
                previous: None,
            },
            TokenSettings::default(),
        )
    }

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    const NOW: u64 = 1_796_000_000;

    #[tokio::test]
    async fn mints_a_voice_token_for_the_claimed_identity() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        let reply = issuer(credentials())
            .answer(&Method::POST, Some(&claims(&[("sub", "alice")])), now)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["identity"], "alice");
        assert_eq!(body["expires_at"], rfc3339(NOW + 600));
        let token = body["token"].as_str().unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"typ": "JWT", "alg": "HS256", "cty": "twilio-fpa;v=1"})
        );
        let claims = decode(parts[1]);
        assert_eq!(
            claims["jti"],
            format!("SK00000000000000000000000000000001-{NOW}")
        );
        assert_eq!(claims["exp"], NOW + 600);
        assert_eq!(claims["grants"]["voice"]["incoming"]["allow"], true);
        // The signature is HMAC-SHA256 of the first two parts with the key's secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
        assert_eq!(
            reply.headers,
            vec![("cache-control", "no-store")],
            "a token must not be cached"
        );
    }

    #[tokio::test]
    async fn refuses_with_the_reason() {
        let now = SystemTime::now();
        let issuer = issuer(credentials());
        let cases = [
            (Method::GET, Some(claims(&[("sub", "a")])), 405, "use POST"),
            (Method::POST, None, 401, "no authorizer claims"),
            (
                Method::POST,
                Some(claims(&[("email", "a@b")])),
                400,
                "no \\\"sub\\\" claim",
            ),
            (
                Method::POST,
                Some(claims(&[("sub", "auth0|123")])),
                400,
                "'|' at character 6",
            ),
        ];
        for (method, claims, status, reason) in cases {
            let reply = issuer.answer(&method, claims.as_ref(), now).await;
            assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
            assert!(reply.body.contains(reason), "{reason}: {}", reply.body);
        }
        let mut unconfigured = credentials();
        unconfigured.twiml_app_sid = None;
        let reply = self::issuer(unconfigured)
            .answer(&Method::POST, Some(&claims(&[("sub", "a")])), now)
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.body.contains("not configured"), "{}", reply.body);
    }

    #[tokio::test]
    async fn the_identity_claim_is_configurable() {
        let issuer = TokenIssuer::new(
            StaticTokens {
                current: Arc::new(credentials()),
                previous: None,
            },
            TokenSettings {
                identity_claim: "cognito:username".into(),
                ttl: Duration::from_secs(60),
            },
        );
        let reply = issuer
            .answer(
                &Method::POST,
                Some(&claims(&[("sub", "x y"), ("cognito:username", "bob")])),
                SystemTime::now(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.body.contains(r#""identity":"bob""#), "{}", reply.body);
    }
}
