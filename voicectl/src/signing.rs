//! `voicectl sign` and `voicectl verify`: Twilio's request signature, computed and
//! explained. Behind a proxy or a custom domain the URL the function rebuilds is often not
//! the one Twilio was given; `verify` says which URLs it tried and which one the signature
//! does match, which token, and whether a JSON body's hash agreed.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use voicehooks::twilio::signature::{self, BODY_SHA256_PARAM, Diagnosis};

/// What to sign or verify: form params, or a JSON body (signed by its URL's `bodySHA256`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub url: String,
    pub params: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Request {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// A signature, and the URL it is for (a JSON body adds `bodySHA256` when the URL lacks it).
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    pub url: String,
    pub signature: String,
}

pub fn sign(auth_token: &str, request: &Request) -> Signed {
    sign_with(signature::Algorithm::HmacSha1, auth_token, request)
}

/// [`sign`] with `algorithm` (a SharedKey's HMAC-SHA256: its secret as `key`).
pub fn sign_with(algorithm: signature::Algorithm, key: &str, request: &Request) -> Signed {
    match &request.body {
        Some(body) => {
            let url = if signature::body_sha256_param(&request.url).is_some() {
                request.url.clone()
            } else {
                let hash = hex::encode(Sha256::digest(body.as_bytes()));
                let joiner = if request.url.contains('?') { '&' } else { '?' };
                format!("{}{joiner}{BODY_SHA256_PARAM}={hash}", request.url)
            };
            Signed {
                signature: signature::compute_signature_with(algorithm, key, &url, []),
                url,
            }
        }
        None => Signed {
            url: request.url.clone(),
            signature: signature::compute_signature_with(
                algorithm,
                key,
                &request.url,
                request.pairs(),
            ),
        },
    }
}

/// A token, named without showing it: its label and the start of its SHA-256.
#[derive(Debug, Clone, Serialize)]
pub struct TokenDiagnosis {
    pub token: String,
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
}

pub fn fingerprint(label: &str, token: &str) -> String {
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    format!("{label} (sha256 {}…)", &hash[..8])
}

/// Verifies `request` against each token in turn.
pub fn verify(
    tokens: &[(String, String)],
    request: &Request,
    signature: &str,
) -> Vec<TokenDiagnosis> {
    verify_with(signature::Algorithm::HmacSha1, tokens, request, signature)
}

/// [`verify`] with `algorithm` (SharedKey secrets as the tokens for HMAC-SHA256).
pub fn verify_with(
    algorithm: signature::Algorithm,
    tokens: &[(String, String)],
    request: &Request,
    signature: &str,
) -> Vec<TokenDiagnosis> {
    tokens
        .iter()
        .map(|(label, token)| TokenDiagnosis {
            token: fingerprint(label, token),
            diagnosis: signature::diagnose_with(
                algorithm,
                token,
                &request.url,
                &request.pairs(),
                request.body.as_deref().map(str::as_bytes),
                signature,
            ),
        })
        .collect()
}

/// The explanation a person reads.
pub fn explain(results: &[TokenDiagnosis]) -> String {
    let mut out = String::new();
    if let Some(ok) = results.iter().find(|r| r.diagnosis.valid) {
        out.push_str(&format!("VALID with token {}\n", ok.token));
        if results.first().is_some_and(|first| !first.diagnosis.valid) {
            out.push_str(
                "  note: only the previous token matched; Twilio still signs with it, so the \
                 rotation has not reached Twilio (or finished) yet\n",
            );
        }
        return out;
    }
    out.push_str("INVALID\n");
    for result in results {
        let d = &result.diagnosis;
        out.push_str(&format!("token {}:\n", result.token));
        for attempt in &d.tried {
            out.push_str(&format!(
                "  tried {}  (would need {})\n",
                attempt.url, attempt.expected_signature
            ));
        }
        if let Some(hash) = &d.body_hash {
            match &hash.in_url {
                None => out.push_str(&format!(
                    "  the URL has no {BODY_SHA256_PARAM}: Twilio adds it for JSON bodies, so \
                     this URL is not the one Twilio called\n"
                )),
                Some(in_url) if !hash.matched => out.push_str(&format!(
                    "  body hash differs: the URL says {in_url}, the body hashes to {} \
                     (the body was changed on the way, e.g. re-encoded by a proxy)\n",
                    hash.of_body
                )),
                Some(_) => out.push_str("  body hash matches the URL's bodySHA256\n"),
            }
        }
        for url in &d.matches_instead {
            out.push_str(&format!(
                "  the signature matches {url}: Twilio was given that URL. Behind a proxy or \
                 custom domain, deploy with PublicBaseUrl (VOICEHOOKS_PUBLIC_BASE_URL) set to \
                 the prefix Twilio calls\n"
            ));
        }
        if d.matches_instead.is_empty() && d.tried.iter().all(|a| !a.matched) {
            out.push_str(
                "  no nearby URL matches either. Twilio signs the URL it was given: take it\n  \
                 from Twilio's debugger (error 11200, the request inspector), not from this\n  \
                 stack's logs, which show the URL the stack rebuilt. Otherwise: a different\n  \
                 token (a subaccount's), or params changed on the way\n",
            );
        }
    }
    out
}

/// Where the URL Twilio signed and the one the stack rebuilds part, if they do: the stack
/// checks its base URL + the request's path and query, so a custom domain or proxy in front
/// of API Gateway needs `PublicBaseUrl` set to what Twilio calls.
pub fn compare_with_stack(
    url: &str,
    stack: &crate::connect::PublicBase,
    valid: bool,
) -> Option<String> {
    let stack_base = stack.url.trim_end_matches('/');
    if url.starts_with(&format!("{stack_base}/")) || url == stack_base {
        return None;
    }
    // Every route the stack serves is under /twilio/: what precedes it is the base Twilio uses.
    let (twilio_base, route) = url
        .find("/twilio/")
        .map_or((url, ""), |at| url.split_at(at));
    let mut note = format!(
        "URL MISMATCH: Twilio signed for {url}\n  the stack checks {stack_base}{route} (its \
         base URL, from {})\n",
        stack.source
    );
    if valid {
        note.push_str(&format!(
            "  the signature is valid for the URL Twilio called, so every such request gets 403\n  \
             fix: deploy with PublicBaseUrl={twilio_base} (VOICEHOOKS_PUBLIC_BASE_URL), the \
             prefix Twilio calls\n"
        ));
    } else {
        note.push_str("  and the signature is not valid for the URL Twilio called either:\n");
    }
    Some(note)
}

/// One line of `verify --batch`.
#[derive(Debug, Deserialize)]
struct BatchCase {
    url: String,
    #[serde(default)]
    params: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    auth_token: String,
    #[serde(alias = "signature_header")]
    signature: String,
    /// `X-Twilio-Webhooks-Signature-Settings` as received: a SharedKey signature, with
    /// `auth_token` holding the key's secret.
    #[serde(default)]
    signature_settings: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct BatchVerdict {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    diagnosis: Option<Diagnosis>,
}

/// `verify --batch`: one JSON verdict line per input line, in order. A line that is not a
/// case gets `{"valid": false, "error": …}` so the output still lines up with the input.
pub fn verify_batch(input: impl BufRead, mut output: impl std::io::Write) -> anyhow::Result<usize> {
    let mut count = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let verdict = match serde_json::from_str::<BatchCase>(&line) {
            Ok(case) => {
                let request = Request {
                    url: case.url,
                    params: case.params,
                    body: case.body,
                };
                let pairs = request.pairs();
                match signature::Algorithm::from_settings(case.signature_settings.as_deref()) {
                    Some(algorithm) => {
                        let diagnosis = signature::diagnose_with(
                            algorithm,
                            &case.auth_token,
                            &request.url,
                            &pairs,
                            request.body.as_deref().map(str::as_bytes),
                            &case.signature,
                        );
                        BatchVerdict {
                            valid: diagnosis.valid,
                            id: case.id,
                            error: None,
                            diagnosis: Some(diagnosis),
                        }
                    }
                    // As the official libraries: an algorithm they do not know fails.
                    None => BatchVerdict {
                        valid: false,
                        id: case.id,
                        error: Some("unsupported signature algorithm".into()),
                        diagnosis: None,
                    },
                }
            }
            Err(e) => BatchVerdict {
                valid: false,
                id: None,
                error: Some(format!("not a case: {e}")),
                diagnosis: None,
            },
        };
        serde_json::to_writer(&mut output, &verdict)?;
        writeln!(output)?;
        count += 1;
    }
    output.flush()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_body_gets_its_hash_in_the_url_and_verifies() {
        let request = Request {
            url: "https://h.example/events".into(),
            params: Vec::new(),
            body: Some(r#"{"CallSid":"CA1"}"#.into()),
        };
        let signed = sign("t", &request);
        assert!(signed.url.contains("?bodySHA256="));
        let request = Request {
            url: signed.url.clone(),
            ..request
        };
        let results = verify(&[("given".into(), "t".into())], &request, &signed.signature);
        assert!(results[0].diagnosis.valid);
        assert!(explain(&results).starts_with("VALID with token given (sha256 "));
    }

    #[test]
    fn the_explanation_names_the_previous_token_and_never_shows_a_token() {
        let request = Request {
            url: "https://h.example/twilio/status".into(),
            params: vec![("CallSid".into(), "CA1".into())],
            body: None,
        };
        let signed = sign("old-token-value", &request);
        let tokens = [
            ("AWSCURRENT".to_owned(), "new-token-value".to_owned()),
            ("AWSPREVIOUS".to_owned(), "old-token-value".to_owned()),
        ];
        let text = explain(&verify(&tokens, &request, &signed.signature));
        assert!(text.contains("VALID with token AWSPREVIOUS"), "{text}");
        assert!(text.contains("rotation"), "{text}");
        assert!(!text.contains("token-value"), "{text}");
    }

    #[test]
    fn batch_lines_answer_in_order_even_when_one_is_broken() {
        let good = Request {
            url: "https://h.example/x".into(),
            params: vec![("A".into(), "1".into())],
            body: None,
        };
        let signature = sign("t", &good).signature;
        let input = format!(
            "{}\nnot json\n{}\n",
            serde_json::json!({"url": good.url, "params": [["A", "1"]], "body": null, "auth_token": "t", "signature": signature}),
            serde_json::json!({"url": good.url, "params": [["A", "2"]], "body": null, "auth_token": "t", "signature": signature}),
        );
        let mut out = Vec::new();
        assert_eq!(verify_batch(input.as_bytes(), &mut out).unwrap(), 3);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["valid"], true);
        assert_eq!(lines[1]["valid"], false);
        assert!(
            lines[1]["error"]
                .as_str()
                .unwrap()
                .starts_with("not a case")
        );
        assert_eq!(lines[2]["valid"], false);
    }
}
