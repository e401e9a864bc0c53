//! Every case of the signature conformance vectors, whose verdicts come from the official
//! twilio-python validator, must get the same verdict here.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::path::PathBuf;

use serde::Deserialize;
use voicehooks::twilio::signature::{
    Algorithm, validate_form, validate_form_with, validate_json, validate_json_with,
};

#[derive(Deserialize)]
struct Vectors {
    count: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    variant: String,
    url: String,
    params: Option<Vec<(String, String)>>,
    body: Option<String>,
    auth_token: String,
    signature_header: String,
    /// SharedKey cases: the `X-Twilio-Webhooks-Signature-Settings` header, if sent.
    #[serde(default)]
    signature_settings: Option<String>,
    expected_valid: bool,
}

fn vendored() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn verdict(case: &Case) -> bool {
    match case.kind.as_str() {
        "form" => {
            let params = case.params.as_deref().unwrap_or_default();
            validate_form(
                &case.auth_token,
                &case.url,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &case.signature_header,
            )
        }
        "json" => {
            let body = case.body.as_deref().unwrap_or_default();
            validate_json(
                &case.auth_token,
                &case.url,
                body.as_bytes(),
                &case.signature_header,
            )
            .unwrap_or(false)
        }
        other => panic!("{}: unknown kind {other}", case.id),
    }
}

/// Every case of `file` (at least `at_least` of them) gets its expected verdict from `verdict`.
fn agree(file: &str, at_least: usize, verdict: fn(&Case) -> bool) {
    let text = std::fs::read_to_string(vendored().join(file)).expect("vendored vectors");
    let vectors: Vectors = serde_json::from_str(&text).expect("vectors parse");
    assert_eq!(vectors.cases.len(), vectors.count, "{file} is complete");
    assert!(vectors.count >= at_least);
    let disagreements: Vec<String> = vectors
        .cases
        .iter()
        .filter(|case| verdict(case) != case.expected_valid)
        .map(|case| {
            format!(
                "{} {} (expected {}): {}",
                case.id, case.variant, case.expected_valid, case.note
            )
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    let valid = vectors.cases.iter().filter(|c| c.expected_valid).count();
    println!(
        "{file}: {} cases agree ({valid} valid, {} invalid)",
        vectors.count,
        vectors.count - valid
    );
}

#[test]
fn every_signature_case_agrees_with_the_official_validator() {
    agree("signature_vectors.json", 66, verdict);
}

/// A SharedKey case: the algorithm from its settings header, as the official libraries read
/// it; an algorithm we do not know fails.
fn sharedkey_verdict(case: &Case) -> bool {
    let Some(algorithm) = Algorithm::from_settings(case.signature_settings.as_deref()) else {
        return false;
    };
    match case.kind.as_str() {
        "form" => {
            let params = case.params.as_deref().unwrap_or_default();
            validate_form_with(
                algorithm,
                &case.auth_token,
                &case.url,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &case.signature_header,
            )
        }
        "json" => validate_json_with(
            algorithm,
            &case.auth_token,
            &case.url,
            case.body.as_deref().unwrap_or_default().as_bytes(),
            &case.signature_header,
        )
        .unwrap_or(false),
        other => panic!("{}: unknown kind {other}", case.id),
    }
}

#[test]
fn every_sharedkey_case_agrees_with_the_official_validators() {
    agree("sharedkey_vectors.json", 45, sharedkey_verdict);
}

#[test]
fn vendored_vectors_match_the_shared_folder() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if !shared.is_dir() {
        // A clone without the project's shared folder beside it: the vendored copy stands.
        return;
    }
    for name in [
        "signature_vectors.json",
        "sharedkey_vectors.json",
        "twiml_vectors.json",
    ] {
        let upstream = std::fs::read(shared.join(name)).expect("shared vector file");
        let ours = std::fs::read(vendored().join(name)).expect("vendored vector file");
        assert!(
            upstream == ours,
            "{name} differs from ../shared/conformance: refresh the vendored copy"
        );
    }
}
