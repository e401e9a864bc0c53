//! Softphone tokens: the minted JWT against Twilio's own library, and the real
//! `softphone-token` binary behind the local JWT authorizer.

use std::process::{Command, Stdio};
use std::time::Duration;

use devstack::faults::{FaultPlan, Outage};
use devstack::gateway::LOCAL_AUDIENCE;
use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};
use serde_json::{Value, json};
use voicehooks::config::local;
use voicehooks::softphone::VoiceToken;

/// twilio-python's token for the same inputs (`tests/oracle/access_token.py`).
fn official_token(token: &VoiceToken<'_>, secret: &str) -> String {
    let root = Workspace::locate().root;
    let python = root.join(".venv/oracle/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make venv`",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("tests/oracle/access_token.py"))
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let input = json!({
        "account_sid": token.account_sid,
        "api_key_sid": token.api_key_sid,
        "api_key_secret": secret,
        "twiml_app_sid": token.twiml_app_sid,
        "identity": token.identity,
        "issued_at": token.issued_at,
        "ttl": token.ttl.as_secs(),
    });
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        input.to_string().as_bytes(),
    )
    .expect("write");
    let output = child.wait_with_output().expect("the oracle finishes");
    assert!(output.status.success(), "the oracle failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn decode(part: &str) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[test]
fn our_access_token_is_twilios_byte_for_byte() {
    let identities = [
        "alice",
        "alice@example.com",
        "us-east-1:9b1c4f3e-0000-4000-8000-000000000000",
        "José Ñandú".replace(' ', "_").leak(),
    ];
    for (n, identity) in identities.into_iter().enumerate() {
        let token = VoiceToken {
            account_sid: local::ACCOUNT_SID,
            api_key_sid: local::API_KEY_SID,
            twiml_app_sid: local::TWIML_APP_SID,
            identity,
            issued_at: 1_796_000_000 + n as u64 * 7919,
            ttl: [600, 60, 86_400, 3600].map(Duration::from_secs)[n],
        };
        let ours = token.sign(local::API_KEY_SECRET);
        let theirs = official_token(&token, local::API_KEY_SECRET);
        let parts = |t: &str| -> Vec<Value> { t.split('.').take(2).map(decode).collect() };
        // Same header and claims, as values first (a clearer failure), then as bytes. Python
        // writes non-ASCII as \u escapes where serde_json writes UTF-8: the same JSON, so
        // those tokens differ in bytes and signature only, and Twilio reads both alike.
        assert_eq!(parts(&ours), parts(&theirs), "{identity}");
        if identity.is_ascii() {
            assert_eq!(ours, theirs, "{identity}");
        }
    }
}

async fn stack(label: &str, faults: Option<FaultPlan>) -> LocalStack {
    LocalStack::start(StackOptions {
        label: label.into(),
        faults,
        ..Default::default()
    })
    .await
    .expect("the local stack starts (run `make build-local`)")
}

/// Checks an HS256 token with the API key's secret as Twilio would, returning its claims.
fn twilio_accepts(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[local::API_KEY_SID]);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(local::API_KEY_SECRET.as_bytes()).expect("a key"),
        &validation,
    )
    .expect("a valid Access Token");
    assert_eq!(data.header.cty.as_deref(), Some("twilio-fpa;v=1"));
    data.claims
}

#[tokio::test]
async fn a_signed_in_softphone_gets_a_voice_token_and_everyone_else_a_reason() {
    let stack = stack("softphone-token", None).await;
    let url = stack.softphone_token_url();
    let http = reqwest::Client::new();
    let post = |bearer: Option<String>| {
        let mut request = http.post(&url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    let response = post(Some(stack.issuer.bearer("alice", json!({}))))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["identity"], "alice");
    let claims = twilio_accepts(body["token"].as_str().unwrap());
    assert_eq!(claims["sub"], local::ACCOUNT_SID);
    assert_eq!(claims["grants"]["identity"], "alice");
    assert_eq!(
        claims["grants"]["voice"]["outgoing"]["application_sid"],
        local::TWIML_APP_SID
    );
    assert_eq!(claims["grants"]["voice"]["incoming"]["allow"], true);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["nbf"].as_u64().unwrap();
    assert_eq!(lifetime, 600, "the default TTL");
    assert_eq!(
        claims["jti"],
        format!("{}-{}", local::API_KEY_SID, claims["nbf"])
    );
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    // The authorizer: no token, another audience, an expired one. 401 before the function.
    for bearer in [
        None,
        Some(stack.issuer.bearer("alice", json!({"aud": "another-app"}))),
        Some(stack.issuer.bearer("alice", json!({"exp": 1_700_000_000}))),
        Some("not-a-jwt".to_owned()),
    ] {
        let response = post(bearer.clone()).await.unwrap();
        assert_eq!(response.status(), 401, "{bearer:?}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer scope=\"\" error=\"invalid_token\""),
        );
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"message": "Unauthorized"})
        );
    }
    // A client_id stands in for a missing aud, as on API Gateway.
    let response = post(Some(
        stack
            .issuer
            .bearer("bob", json!({"aud": null, "client_id": LOCAL_AUDIENCE})),
    ))
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        401,
        "aud: null is present, so it is checked"
    );

    // The function: an identity Twilio would refuse gets 400 and the reason.
    let response = post(Some(stack.issuer.bearer("auth0|5f1c", json!({}))))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let reason = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("'|' at character 6"), "{reason}");
    assert!(reason.contains("31105"), "{reason}");

    // Only POST is routed.
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 404);
    stack.stop().await;
}

#[tokio::test]
async fn without_the_secret_a_softphone_is_told_to_come_back() {
    let stack = stack(
        "softphone-token-outage",
        Some(FaultPlan {
            outages: vec![Outage {
                service: "secretsmanager",
                from: Duration::ZERO,
                lasts: Duration::from_secs(3600),
            }],
            ..FaultPlan::default()
        }),
    )
    .await;
    if let Some(proxy) = &stack.proxy {
        proxy.start_clock();
    }
    let response = reqwest::Client::new()
        .post(stack.softphone_token_url())
        .bearer_auth(stack.issuer.bearer("alice", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("cannot be read"),
        "{body}"
    );
    stack.stop().await;
}
