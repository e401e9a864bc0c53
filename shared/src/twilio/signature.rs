//! `X-Twilio-Signature` validation, exactly as Twilio's official libraries do it.
//!
//! The signature is base64(HMAC-SHA1(auth token, url + sorted params)). This mirrors
//! twilio-python's `RequestValidator` (9.x), the reference for
//! `../shared/conformance/signature_vectors.json`:
//! - names sorted; each name's distinct values sorted (repeats de-duplicated);
//! - the URL is tried as given without its port and with the scheme's default port added;
//! - JSON bodies: the URL carries `bodySHA256`, the signature covers the URL alone and the
//!   body's SHA-256 hex must equal that query value;
//! - the computed signature is compared with the header in constant time.
//!
//! `make bench` times this path; twilio-node's `validateRequest` is its peer there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// The header Twilio signs every webhook with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Names the SharedKey and the algorithm of a SharedKey signature
/// (`key=webhooks_sharedkey_…,algorithm=HMAC_SHA256`); absent for the auth-token signature.
pub const SIGNATURE_SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// The HMACs Twilio signs webhooks with: the auth token's HMAC-SHA1, or a SharedKey's
/// HMAC-SHA256, over the same string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

/// The SharedKey SID a settings header names (`key=…`), if any.
pub fn settings_key(settings: &str) -> Option<&str> {
    settings
        .split(',')
        .filter_map(|part| part.split_once('='))
        .find(|(name, value)| name.trim() == "key" && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}

impl Algorithm {
    /// The algorithm `X-Twilio-Webhooks-Signature-Settings` names, read as twilio-python
    /// 9.13.0 does (`get_signature_algorithm`, then `validate`'s upper-casing): the first
    /// comma-separated `algorithm=` part whose trimmed name is exactly `algorithm` and whose
    /// trimmed value is not empty; none means HMAC-SHA1. `None`: an algorithm we do not
    /// know, which fails validation, as it does in the official libraries.
    pub fn from_settings(settings: Option<&str>) -> Option<Self> {
        let named = settings
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find(|(name, value)| name.trim() == "algorithm" && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_ascii_uppercase());
        match named.as_deref() {
            None | Some("HMAC_SHA1") => Some(Self::HmacSha1),
            Some("HMAC_SHA256") => Some(Self::HmacSha256),
            Some(_) => None,
        }
    }
}
/// The query parameter that carries the SHA-256 of a JSON body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Computes the signature Twilio would send for `url` and form `params`.
pub fn compute_signature<'a, I>(auth_token: &str, url: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    compute_signature_with(Algorithm::HmacSha1, auth_token, url, params)
}

/// [`compute_signature`] with `algorithm`, keyed with the auth token or SharedKey secret.
pub fn compute_signature_with<'a, I>(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: I,
) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sort_params(&mut sorted);
    signature_string(algorithm, key, url, &sorted)
}

/// Validates a form-encoded webhook against one auth token.
pub fn validate_form<'a, I>(auth_token: &str, url: &str, params: I, signature: &str) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    validate_form_with(Algorithm::HmacSha1, auth_token, url, params, signature)
}

/// [`validate_form`] with `algorithm` and its key.
pub fn validate_form_with<'a, I>(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: I,
    signature: &str,
) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sort_params(&mut sorted);
    matches_any_port_variant(algorithm, key, url, &sorted, signature)
}

/// Validates a JSON-bodied webhook against one auth token. `None` means the URL carries no
/// `bodySHA256`, which Twilio always adds for JSON bodies: such a request cannot be validated.
pub fn validate_json(auth_token: &str, url: &str, body: &[u8], signature: &str) -> Option<bool> {
    validate_json_with(Algorithm::HmacSha1, auth_token, url, body, signature)
}

/// [`validate_json`] with `algorithm` and its key.
pub fn validate_json_with(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    body: &[u8],
    signature: &str,
) -> Option<bool> {
    let expected_hash = body_sha256_param(url)?;
    let body_ok = ct_eq(
        hex::encode(Sha256::digest(body)).as_bytes(),
        expected_hash.as_bytes(),
    );
    let signature_ok = matches_any_port_variant(algorithm, key, url, &[], signature);
    Some(body_ok & signature_ok)
}

/// The `bodySHA256` value in the URL's query, if any (first value, like `parse_qs`).
pub fn body_sha256_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name == BODY_SHA256_PARAM && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

/// Sorts by name then value and drops repeated (name, value) pairs: the same as the
/// official libraries' `sorted(set(names))` then `sorted(set(values))`. Rust orders `str`
/// by UTF-8 bytes, which is code-point order, as Python's `sorted` is.
fn sort_params(params: &mut Vec<(&str, &str)>) {
    params.sort_unstable();
    params.dedup();
}

fn matches_any_port_variant(
    algorithm: Algorithm,
    token: &str,
    url: &str,
    sorted: &[(&str, &str)],
    signature: &str,
) -> bool {
    let matches = |url: &str| {
        // base64 of a 32-byte MAC is 44: encoded on the stack, not into a String.
        let mut encoded = [0u8; 44];
        let n = encode_mac(algorithm, token, url, sorted, &mut encoded);
        ct_eq(&encoded[..n], signature.as_bytes())
    };
    // Twilio signs the URL as configured: the URL as given first, which with a lowercase
    // scheme is one of the two variants (the one with its port, or without when it has
    // none), and the other only when that fails, as twilio-node's `validateRequest` stops
    // at the first match. Each comparison is constant time; stopping early says only that
    // the first one matched, which a forger never sees and the answer (2xx or 403) tells.
    let lowercase_scheme = url
        .split_once("://")
        .is_none_or(|(scheme, _)| !scheme.bytes().any(|b| b.is_ascii_uppercase()));
    if lowercase_scheme && matches(url) {
        return true;
    }
    let variants = PortVariants::of(url);
    (variants.without_port != url && matches(&variants.without_port))
        || (variants.with_port != url && matches(&variants.with_port))
}

/// The signature of already sorted params, as the header carries it.
fn signature_string(algorithm: Algorithm, key: &str, url: &str, sorted: &[(&str, &str)]) -> String {
    let mut out = [0u8; 44];
    let n = encode_mac(algorithm, key, url, sorted, &mut out);
    // base64 is ASCII.
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// The base64 of the signature into `out` (44 bytes hold either); returns its length.
fn encode_mac(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    sorted: &[(&str, &str)],
    out: &mut [u8; 44],
) -> usize {
    let encoded = match algorithm {
        Algorithm::HmacSha1 => BASE64.encode_slice(sign::<HmacSha1>(key, url, sorted), out),
        Algorithm::HmacSha256 => BASE64.encode_slice(sign::<HmacSha256>(key, url, sorted), out),
    };
    encoded.unwrap_or(0)
}

fn sign<M: Mac + hmac::digest::KeyInit>(
    key: &str,
    url: &str,
    sorted: &[(&str, &str)],
) -> hmac::digest::Output<M> {
    let mut mac =
        <M as Mac>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes()
}

/// Why a signature does or does not match: what `voicectl verify` explains. Not a request
/// path (it is not constant time and tries more than the validators do): the verdict comes
/// from [`validate_form`] / [`validate_json`], the rest is there to find the mistake.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    pub valid: bool,
    /// The URL forms the validator tries, with the signature each would need.
    pub tried: Vec<Attempt>,
    /// JSON bodies: the `bodySHA256` in the URL against the body's own hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<BodyHash>,
    /// When invalid: nearby URLs that the signature does match (the usual proxy and custom
    /// domain mistakes: the other scheme, a trailing slash, a dropped query string).
    pub matches_instead: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    pub url: String,
    pub expected_signature: String,
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BodyHash {
    /// The URL's `bodySHA256`, if it has one.
    pub in_url: Option<String>,
    pub of_body: String,
    pub matched: bool,
}

/// Diagnoses a request: form `params`, or a JSON `body` (then `params` are ignored, as
/// Twilio signs the URL alone).
pub fn diagnose(
    auth_token: &str,
    url: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
    signature: &str,
) -> Diagnosis {
    diagnose_with(
        Algorithm::HmacSha1,
        auth_token,
        url,
        params,
        body,
        signature,
    )
}

/// [`diagnose`] for `algorithm` (a SharedKey signature: its secret as `auth_token`).
pub fn diagnose_with(
    algorithm: Algorithm,
    auth_token: &str,
    url: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
    signature: &str,
) -> Diagnosis {
    let mut sorted: Vec<(&str, &str)> = match body {
        Some(_) => Vec::new(),
        None => params.to_vec(),
    };
    sort_params(&mut sorted);
    let valid = match body {
        Some(body) => {
            validate_json_with(algorithm, auth_token, url, body, signature).unwrap_or(false)
        }
        None => validate_form_with(
            algorithm,
            auth_token,
            url,
            sorted.iter().copied(),
            signature,
        ),
    };
    let attempts = |url: &str| {
        let variants = PortVariants::of(url);
        let mut forms = vec![variants.without_port];
        if variants.with_port != forms[0] {
            forms.push(variants.with_port);
        }
        forms
            .into_iter()
            .map(|url| {
                let expected_signature = signature_string(algorithm, auth_token, &url, &sorted);
                let matched = expected_signature == signature;
                Attempt {
                    url,
                    expected_signature,
                    matched,
                }
            })
            .collect::<Vec<_>>()
    };
    let body_hash = body.map(|body| {
        let in_url = body_sha256_param(url);
        let of_body = hex::encode(Sha256::digest(body));
        BodyHash {
            matched: in_url.as_deref() == Some(of_body.as_str()),
            in_url,
            of_body,
        }
    });
    let matches_instead = if valid {
        Vec::new()
    } else {
        nearby_urls(url)
            .into_iter()
            .filter(|candidate| attempts(candidate).iter().any(|a| a.matched))
            .collect()
    };
    Diagnosis {
        valid,
        tried: attempts(url),
        body_hash,
        matches_instead,
    }
}

/// URLs one common mistake away from `url`.
fn nearby_urls(url: &str) -> Vec<String> {
    let flipped = if let Some(rest) = url.strip_prefix("https://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("https://{rest}")
    } else {
        return Vec::new();
    };
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let slash = match path.strip_suffix('/') {
        Some(trimmed) => trimmed.to_owned(),
        None => format!("{path}/"),
    };
    let with_query = |p: &str| query.map_or_else(|| p.to_owned(), |q| format!("{p}?{q}"));
    let mut urls = vec![flipped.clone(), with_query(&slash)];
    if query.is_some() {
        urls.push(path.to_owned());
    }
    // The other scheme with the slash toggled too.
    if let Some(rest) = with_query(&slash).split_once("://").map(|(_, rest)| rest) {
        let scheme = flipped.split_once("://").map_or("https", |(s, _)| s);
        urls.push(format!("{scheme}://{rest}"));
    }
    urls.retain(|u| u != url);
    urls.dedup();
    urls
}

/// Constant-time equality; a length mismatch is not secret and returns early, as in the
/// official libraries.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The two forms of a URL that the official validators try: any port removed, and the
/// scheme's default port added when none is given.
///
/// Written by hand on the raw string rather than with the `url` crate on purpose: a URL
/// parser normalises (percent-encodes `✓`, drops `:443`, lower-cases hosts) and so changes
/// the very bytes Twilio signed. This keeps every other byte as given, like Python's
/// `urlparse(...).geturl()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortVariants {
    pub without_port: String,
    pub with_port: String,
}

impl PortVariants {
    pub fn of(url: &str) -> Self {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Self {
                without_port: url.to_owned(),
                with_port: url.to_owned(),
            };
        };
        let scheme = scheme.to_ascii_lowercase();
        let netloc_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (netloc, tail) = rest.split_at(netloc_end);
        let host_start = netloc.rfind('@').map_or(0, |at| at + 1);
        let host_port = &netloc[host_start..];
        // The port follows the last ':' outside an IPv6 literal's brackets.
        let port_colon = host_port
            .rfind(':')
            .filter(|&colon| !host_port[colon..].contains(']'))
            .map(|colon| host_start + colon);
        let port = port_colon
            .map(|colon| &netloc[colon + 1..])
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));

        // Concatenated, not `format!`ed: this runs on every webhook (`make bench`).
        let join = |parts: &[&str]| {
            let mut url = String::with_capacity(url.len() + 8);
            url.push_str(&scheme);
            url.push_str("://");
            parts.iter().for_each(|p| url.push_str(p));
            url.push_str(tail);
            url
        };
        match (port, port_colon) {
            (Some(_), Some(colon)) => Self {
                without_port: join(&[&netloc[..colon]]),
                with_port: join(&[netloc]),
            },
            _ => {
                let default_port = if scheme == "https" { ":443" } else { ":80" };
                Self {
                    without_port: join(&[netloc]),
                    with_port: join(&[netloc, default_port]),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_header_names_the_algorithm_as_the_official_libraries_read_it() {
        let key = "key=webhooks_sharedkey_5f2a";
        for (settings, expected) in [
            (None, Some(Algorithm::HmacSha1)),
            (Some(""), Some(Algorithm::HmacSha1)),
            (Some(key), Some(Algorithm::HmacSha1)),
            (Some("key=k,algorithm="), Some(Algorithm::HmacSha1)),
            (
                Some("key=k,algorithm=HMAC_SHA256"),
                Some(Algorithm::HmacSha256),
            ),
            (
                Some("key=k, algorithm = hmac_sha256 "),
                Some(Algorithm::HmacSha256),
            ),
            (Some("algorithm=HMAC_SHA1,key=k"), Some(Algorithm::HmacSha1)),
            // The name is compared exactly (trimmed, not case-folded), as twilio-python does.
            (
                Some("key=k,Algorithm=HMAC_SHA256"),
                Some(Algorithm::HmacSha1),
            ),
            (Some("key=k,algorithm=HMAC_SHA512"), None),
        ] {
            assert_eq!(Algorithm::from_settings(settings), expected, "{settings:?}");
        }
        let signed = compute_signature_with(Algorithm::HmacSha256, "secret", "https://h/x", []);
        assert_eq!(signed.len(), 44);
        assert!(validate_form_with(
            Algorithm::HmacSha256,
            "secret",
            "https://h/x",
            [],
            &signed
        ));
        assert!(!validate_form("secret", "https://h/x", [], &signed));
    }

    const DOC_PARAMS: [(&str, &str); 5] = [
        ("Digits", "1234"),
        ("To", "+18005551212"),
        ("From", "+14158675310"),
        ("Caller", "+14158675310"),
        ("CallSid", "CA1234567890ABCDE"),
    ];

    #[test]
    fn twilio_docs_worked_example() {
        let url = "https://example.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute_signature("12345", url, DOC_PARAMS),
            "L/OH5YylLD5NRKLltdqwSvS0BnU="
        );
        assert!(validate_form(
            "12345",
            url,
            DOC_PARAMS,
            "L/OH5YylLD5NRKLltdqwSvS0BnU="
        ));
        assert!(!validate_form(
            "12346",
            url,
            DOC_PARAMS,
            "L/OH5YylLD5NRKLltdqwSvS0BnU="
        ));
    }

    #[test]
    fn port_variants_follow_the_official_validator() {
        let v = PortVariants::of("https://h.example/a?b=1");
        assert_eq!(v.without_port, "https://h.example/a?b=1");
        assert_eq!(v.with_port, "https://h.example:443/a?b=1");
        let v = PortVariants::of("http://h.example:8443/a");
        assert_eq!(v.without_port, "http://h.example/a");
        assert_eq!(v.with_port, "http://h.example:8443/a");
        let v = PortVariants::of("http://[::1]:9000/x");
        assert_eq!(v.without_port, "http://[::1]/x");
        let v = PortVariants::of("http://[::1]/x");
        assert_eq!(v.with_port, "http://[::1]:80/x");
        let v = PortVariants::of("https://h.example?raw=✓");
        assert_eq!(v.with_port, "https://h.example:443?raw=✓");
    }

    #[test]
    fn diagnosis_names_the_url_that_would_have_matched() {
        let public = "https://hooks.example.com/twilio/status";
        // Signed for the URL Twilio was given; checked behind a proxy that says http.
        let signature = compute_signature("12345", public, DOC_PARAMS);
        let behind_proxy = "http://hooks.example.com/twilio/status";
        let d = diagnose("12345", behind_proxy, &DOC_PARAMS, None, &signature);
        assert!(!d.valid);
        assert_eq!(d.tried.len(), 2);
        assert!(d.tried.iter().all(|a| !a.matched));
        assert_eq!(d.matches_instead, vec![public.to_owned()]);
        let d = diagnose("12345", public, &DOC_PARAMS, None, &signature);
        assert!(d.valid && d.tried[0].matched && d.matches_instead.is_empty());
        // A trailing slash the proxy added.
        let d = diagnose(
            "12345",
            &format!("{public}/"),
            &DOC_PARAMS,
            None,
            &signature,
        );
        assert_eq!(d.matches_instead, vec![public.to_owned()]);
    }

    #[test]
    fn diagnosis_of_a_json_body_reports_the_hash() {
        let body = br#"{"a":1}"#;
        let hash = hex::encode(Sha256::digest(body));
        let url = format!("https://h.example/e?bodySHA256={hash}");
        let signature = compute_signature("t", &url, []);
        let d = diagnose("t", &url, &[], Some(body), &signature);
        assert!(d.valid);
        assert!(d.body_hash.as_ref().is_some_and(|h| h.matched));
        let d = diagnose("t", &url, &[], Some(b"{}"), &signature);
        assert!(!d.valid);
        let hash = d.body_hash.expect("a body hash");
        assert!(!hash.matched && hash.in_url.is_some());
        assert!(
            d.tried.iter().any(|a| a.matched),
            "the URL part still matches"
        );
    }

    #[test]
    fn json_without_body_hash_cannot_be_validated() {
        assert_eq!(validate_json("t", "https://h.example/e", b"{}", "x"), None);
        assert_eq!(
            validate_json("t", "https://h.example/e?bodySHA256=", b"{}", "x"),
            None
        );
    }
}
