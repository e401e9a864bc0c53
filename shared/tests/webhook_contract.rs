//! The acknowledge contract of `POST /twilio/status`, one test per named bad input: each
//! checks the status code, the one-line reason and that nothing was enqueued. The queue and
//! the token source are the crate's own traits; the AWS-backed versions are exercised
//! against the emulator in `tests/`.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use voicehooks::events::EventKind;
use voicehooks::secrets::StaticTokens;
use voicehooks::spill::Deadlines;
use voicehooks::twilio::{Params, overrides};
use voicehooks::webhook::Acknowledger;

const PATH: &str = "/twilio/status";

fn status_params(status: &str) -> Params {
    [
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", status),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
        ("SequenceNumber", "1"),
        ("Timestamp", "Tue, 10 Aug 2021 18:33:27 +0000"),
    ]
    .into_iter()
    .collect()
}

async fn expect_rejected(call: &Call, status: StatusCode, reason: &str) {
    let queue = Arc::new(MemoryQueue::default());
    let reply = call.send(&acknowledger(&queue, None)).await;
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert!(
        reply.body.contains(reason),
        "reason {:?} not in {:?}",
        reason,
        reply.body
    );
    assert_eq!(reply.body.lines().count(), 1, "one-line reason");
    assert!(
        queue.sent.lock().unwrap().is_empty(),
        "nothing may be enqueued"
    );
}

#[tokio::test]
async fn a_signed_callback_is_queued_and_answered_204() {
    let queue = Arc::new(MemoryQueue::default());
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.header("i-twilio-idempotency-token", "idem-1");
    let reply = call.send(&acknowledger(&queue, None)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    let sent = queue.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, EventKind::CallStatus);
    // The key comes from the signed params; Twilio's unsigned token only rides along.
    assert_eq!(
        sent[0].idempotency_key,
        "CA0123456789abcdef0123456789abcdef:call.status:ringing:1"
    );
    assert_eq!(sent[0].delivery_token.as_deref(), Some("idem-1"));
    assert_eq!(sent[0].call_sid, "CA0123456789abcdef0123456789abcdef");
    assert_eq!(sent[0].params, status_params("ringing"));
}

#[tokio::test]
async fn the_previous_token_still_validates_after_a_rotation() {
    let queue = Arc::new(MemoryQueue::default());
    let params = status_params("completed");
    let mut call = Call::form(PATH, &params);
    call.sign_with(OLD_TOKEN, &format!("{BASE}{PATH}"), &params);
    assert_eq!(
        call.send(&acknowledger(&queue, Some(OLD_TOKEN)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call.send(&acknowledger(&queue, None)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(queue.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_query_string_is_part_of_the_signed_url() {
    let queue = Arc::new(MemoryQueue::default());
    let params = status_params("ringing");
    let mut call = Call::form(PATH, &params);
    call.query = "tenant=acme&x=%20y".into();
    call.sign_with(TOKEN, &format!("{BASE}{PATH}?tenant=acme&x=%20y"), &params);
    assert_eq!(
        call.send(&acknowledger(&queue, None)).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn missing_signature_is_403() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.headers.remove("x-twilio-signature");
    expect_rejected(&call, StatusCode::FORBIDDEN, "missing X-Twilio-Signature").await;
}

#[tokio::test]
async fn empty_signature_is_403() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.header("x-twilio-signature", "");
    expect_rejected(&call, StatusCode::FORBIDDEN, "missing X-Twilio-Signature").await;
}

#[tokio::test]
async fn wrong_signature_is_403() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.header("x-twilio-signature", "L/OH5YylLD5NRKLltdqwSvS0BnU=");
    expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
}

#[tokio::test]
async fn wrong_token_is_403() {
    let params = status_params("ringing");
    let mut call = Call::form(PATH, &params);
    call.sign_with(OLD_TOKEN, &format!("{BASE}{PATH}"), &params);
    expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
}

#[tokio::test]
async fn signature_for_another_url_is_403() {
    let params = status_params("ringing");
    let mut call = Call::form(PATH, &params);
    call.sign_with(TOKEN, "https://attacker.example/twilio/status", &params);
    expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
}

#[tokio::test]
async fn tampered_params_are_403() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.body = status_params("completed").to_form().into_bytes();
    expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let mut call = Call::form(PATH, &status_params("ringing"));
        call.method = method;
        expect_rejected(&call, StatusCode::METHOD_NOT_ALLOWED, "not allowed").await;
        let queue = Arc::new(MemoryQueue::default());
        assert!(
            call.send(&acknowledger(&queue, None))
                .await
                .headers
                .contains(&("allow", "POST"))
        );
    }
}

#[tokio::test]
async fn json_without_body_sha256_is_400() {
    let body = br#"{"CallSid":"CA1","AccountSid":"AC1","CallStatus":"ringing"}"#;
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.body = body.to_vec();
    call.header("content-type", "application/json");
    expect_rejected(
        &call,
        StatusCode::BAD_REQUEST,
        "JSON body without bodySHA256",
    )
    .await;
}

#[tokio::test]
async fn json_with_a_valid_body_hash_is_accepted() {
    use sha2::Digest;
    let body = br#"{"CallSid":"CA1","AccountSid":"AC1","CallStatus":"ringing","SequenceNumber":1}"#;
    let query = format!("bodySHA256={}", hex::encode(sha2::Sha256::digest(body)));
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.body = body.to_vec();
    call.query = query.clone();
    call.header("content-type", "application/json");
    call.sign_with(TOKEN, &format!("{BASE}{PATH}?{query}"), &Params::default());
    let queue = Arc::new(MemoryQueue::default());
    assert_eq!(
        call.send(&acknowledger(&queue, None)).await.status,
        StatusCode::NO_CONTENT
    );
    // The same signature over a different body fails the hash check.
    call.body = br#"{"CallSid":"CA1","AccountSid":"AC1","CallStatus":"completed"}"#.to_vec();
    expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
}

#[tokio::test]
async fn body_over_64_kib_is_400() {
    let mut params = status_params("ringing");
    params = params
        .iter()
        .chain([("Padding", "x".repeat(64 * 1024).as_str())])
        .collect();
    let call = Call::form(PATH, &params);
    expect_rejected(&call, StatusCode::BAD_REQUEST, "body over 64 KiB").await;
}

#[tokio::test]
async fn body_that_is_not_form_encoding_is_400() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.body = b"CallSid=CA1&CallStatus=%zzringing".to_vec();
    expect_rejected(&call, StatusCode::BAD_REQUEST, "not valid form encoding").await;
}

#[tokio::test]
async fn body_that_is_not_utf8_is_400() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.body = b"CallSid=CA1&From=\xff\xfe".to_vec();
    expect_rejected(&call, StatusCode::BAD_REQUEST, "not valid UTF-8").await;
    call.body = b"CallSid=CA1&From=%C3%28".to_vec();
    expect_rejected(&call, StatusCode::BAD_REQUEST, "not valid UTF-8").await;
}

#[tokio::test]
async fn other_content_types_are_400() {
    let mut call = Call::form(PATH, &status_params("ringing"));
    call.header("content-type", "text/plain");
    expect_rejected(&call, StatusCode::BAD_REQUEST, "unsupported content type").await;
    call.headers.remove("content-type");
    expect_rejected(&call, StatusCode::BAD_REQUEST, "unsupported content type").await;
}

fn without(name: &str) -> Params {
    status_params("ringing")
        .iter()
        .filter(|(n, _)| *n != name)
        .collect()
}

#[tokio::test]
async fn missing_call_sid_is_400() {
    expect_rejected(
        &Call::form(PATH, &without("CallSid")),
        StatusCode::BAD_REQUEST,
        "missing CallSid",
    )
    .await;
}

#[tokio::test]
async fn missing_call_status_is_400() {
    expect_rejected(
        &Call::form(PATH, &without("CallStatus")),
        StatusCode::BAD_REQUEST,
        "missing CallStatus",
    )
    .await;
}

#[tokio::test]
async fn unknown_call_status_is_400() {
    expect_rejected(
        &Call::form(PATH, &status_params("exploded")),
        StatusCode::BAD_REQUEST,
        "unknown CallStatus \"exploded\"",
    )
    .await;
}

/// Both stores: the queue, then the spill.
fn durable(
    queue: &Arc<MemoryQueue>,
    spill: &Arc<MemorySpill>,
) -> Acknowledger<Arc<MemoryQueue>, StaticTokens, Arc<MemorySpill>> {
    acknowledger(queue, None).with_spill(spill.clone())
}

#[tokio::test]
async fn with_the_queue_down_the_event_is_spilled_and_answered_204() {
    let queue = Arc::new(MemoryQueue {
        down: true.into(),
        ..Default::default()
    });
    let spill = Arc::new(MemorySpill::default());
    let call = Call::form(PATH, &status_params("ringing"));
    let reply = durable(&queue, &spill).call_status(&call.request()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(queue.sent().is_empty());
    assert_eq!(spill.spilled().len(), 1);
    assert_eq!(spill.spilled()[0].params, status_params("ringing"));
}

#[tokio::test]
async fn a_queue_slower_than_its_deadline_gives_way_to_the_spill_in_time() {
    let queue = Arc::new(MemoryQueue {
        latency: Duration::from_secs(30),
        ..Default::default()
    });
    let spill = Arc::new(MemorySpill::default());
    let deadlines = Deadlines {
        queue: Duration::from_millis(100),
        total: Duration::from_millis(300),
    };
    let started = Instant::now();
    let reply = durable(&queue, &spill)
        .with_deadlines(deadlines)
        .call_status(&Call::form(PATH, &status_params("ringing")).request())
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spill.spilled().len(), 1);
}

#[tokio::test]
async fn a_queue_slower_than_its_share_keeps_its_chance_beside_the_spill() {
    // SQS answers after its share but inside the total; the spill, started beside it at
    // the share, refuses: the event is queued, not lost.
    let queue = Arc::new(MemoryQueue {
        latency: Duration::from_millis(250),
        ..Default::default()
    });
    let spill = Arc::new(MemorySpill {
        down: true.into(),
        ..Default::default()
    });
    let deadlines = Deadlines {
        queue: Duration::from_millis(100),
        total: Duration::from_millis(1000),
    };
    let reply = durable(&queue, &spill)
        .with_deadlines(deadlines)
        .call_status(&Call::form(PATH, &status_params("ringing")).request())
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(queue.sent().len(), 1);
    assert_eq!(queue.attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(spill.spilled().is_empty());
}

#[tokio::test]
async fn the_breaker_spills_first_after_repeated_refusals_and_closes_when_a_probe_goes_through() {
    use std::sync::atomic::Ordering;
    let queue = Arc::new(MemoryQueue {
        down: true.into(),
        ..Default::default()
    });
    let spill = Arc::new(MemorySpill::default());
    let ack = durable(&queue, &spill);
    let post = |status: &'static str| {
        let ack = &ack;
        async move {
            let reply = ack
                .call_status(&Call::form(PATH, &status_params(status)).request())
                .await;
            assert_eq!(
                reply.status,
                StatusCode::NO_CONTENT,
                "{status}: {}",
                reply.body
            );
        }
    };
    // SQS refuses three in a row: each was asked, then spilled.
    for status in ["initiated", "ringing", "in-progress"] {
        post(status).await;
    }
    assert_eq!(queue.attempts.load(Ordering::SeqCst), 3);
    // Open: the next callbacks go straight to the spill, SQS not asked.
    post("completed").await;
    post("busy").await;
    assert_eq!(
        queue.attempts.load(Ordering::SeqCst),
        3,
        "open: SQS was not asked"
    );
    assert_eq!(spill.spilled().len(), 5);
    // The spill refuses while open: the queue is still tried before a 503.
    spill.down.store(true, Ordering::SeqCst);
    queue.down.store(false, Ordering::SeqCst);
    post("failed").await;
    assert_eq!(
        queue.sent().len(),
        1,
        "the queue took what the spill refused"
    );
    spill.down.store(false, Ordering::SeqCst);
    // SQS is back; after the open while (at most 2 s the first time), one probe goes
    // through and closes the breaker: from then on events are queued first.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    post("no-answer").await;
    post("canceled").await;
    assert_eq!(queue.sent().len(), 3, "closed: both queued");
    assert_eq!(spill.spilled().len(), 5);
}

#[tokio::test]
async fn without_a_token_a_callback_is_kept_unverified_and_checked_later_as_the_webhook_would() {
    use voicehooks::spill::{Unverifiable, VerifyLater};
    use voicehooks::webhook::Verifier;
    let queue = Arc::new(MemoryQueue::default());
    let spill = Arc::new(MemorySpill::default());
    let cold = Acknowledger::new(BASE, queue.clone(), NoTokens).with_spill(spill.clone());
    let genuine = Call::form(PATH, &status_params("ringing"));
    let mut forged = Call::form(PATH, &status_params("completed"));
    forged.sign_with(
        "not-the-token",
        &format!("{BASE}{PATH}"),
        &status_params("completed"),
    );
    let without_status: Params = status_params("ringing")
        .iter()
        .filter(|(name, _)| *name != "CallStatus")
        .collect();
    let malformed = Call::form(PATH, &without_status);
    for call in [&genuine, &forged, &malformed] {
        let reply = cold.call_status(&call.request()).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    assert!(queue.sent().is_empty(), "nothing unverified is queued");
    let kept = spill.unverified.lock().unwrap().clone();
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter()
            .all(|k| k.key().starts_with("spill/call.status/unverified/"))
    );

    // Later, with the token: the genuine request gives exactly the event the webhook would
    // have queued; the forgery and the malformed one are refused, as 403 and 400 would have.
    let warm = Arc::new(MemoryQueue::default());
    genuine.send(&acknowledger(&warm, None)).await;
    let queued = &warm.sent()[0];
    let verifier = Verifier::new(BASE, tokens(None));
    let later = verifier.envelope(&kept[0]).await.unwrap();
    assert_eq!(later.idempotency_key, queued.idempotency_key);
    assert_eq!(later.params, queued.params);
    assert_eq!(later.received_at, kept[0].received_at);
    assert!(
        matches!(verifier.envelope(&kept[1]).await, Err(Unverifiable::Refused(why)) if why.contains("X-Twilio-Signature")),
        "the forgery"
    );
    assert!(
        matches!(verifier.envelope(&kept[2]).await, Err(Unverifiable::Refused(why)) if why.contains("CallStatus")),
        "the malformed one"
    );
    // Still no token: it waits.
    assert!(matches!(
        Verifier::new(BASE, NoTokens).envelope(&kept[0]).await,
        Err(Unverifiable::NotYet(_))
    ));
    // A retry of the same delivery is the same object, not a second one.
    let again = spill.unverified.lock().unwrap().clone();
    cold.call_status(&genuine.request()).await;
    let retried = spill.unverified.lock().unwrap().last().unwrap().clone();
    assert_eq!(retried.key(), again[0].key());
    // With the spill down too, the answer is 503.
    spill.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let reply = cold.call_status(&genuine.request()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("auth token unavailable"));
}

#[tokio::test]
async fn only_when_both_stores_fail_is_the_answer_503() {
    let queue = Arc::new(MemoryQueue {
        down: true.into(),
        ..Default::default()
    });
    let spill = Arc::new(MemorySpill {
        down: true.into(),
        ..Default::default()
    });
    let reply = durable(&queue, &spill)
        .call_status(&Call::form(PATH, &status_params("ringing")).request())
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("not queued, retry later"));
    assert!(queue.sent().is_empty() && spill.spilled().is_empty());
    // Without a spill configured, the queue alone decides.
    let reply = Call::form(PATH, &status_params("ringing"))
        .send(&acknowledger(&queue, None))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_signature_over_the_url_with_its_overrides_is_accepted_too() {
    // Whether Twilio signs the fragment is undocumented: both must pass.
    let params = status_params("ringing");
    for signed_for in [
        format!("{BASE}{PATH}"),
        overrides::with_overrides(&format!("{BASE}{PATH}"), overrides::CALLBACK),
    ] {
        let queue = Arc::new(MemoryQueue::default());
        let mut call = Call::form(PATH, &params);
        call.sign_with(TOKEN, &signed_for, &params);
        let reply = call.send(&acknowledger(&queue, None)).await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "signed for {signed_for}"
        );
        assert_eq!(queue.sent().len(), 1);
    }
    // Another route's overrides, or any other fragment, are not what this URL was given.
    for signed_for in [
        overrides::with_overrides(&format!("{BASE}{PATH}"), overrides::VOICE),
        format!("{BASE}{PATH}#rc=5"),
    ] {
        let mut call = Call::form(PATH, &params);
        call.sign_with(TOKEN, &signed_for, &params);
        expect_rejected(&call, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").await;
    }
}

/// Stack credentials whose secret holds a SharedKey (and, mid-rotation, the key before it).
fn with_shared_keys(
    queue: &Arc<MemoryQueue>,
) -> Acknowledger<Arc<MemoryQueue>, voicehooks::secrets::StaticTokens> {
    let mut credentials = voicehooks::secrets::TwilioCredentials::new(ACCOUNT_SID, TOKEN);
    credentials.webhook_shared_keys = vec![
        voicehooks::secrets::SharedKey {
            sid: "webhooks_sharedkey_new".into(),
            secret: "the new shared key secret".into(),
        },
        voicehooks::secrets::SharedKey {
            sid: "webhooks_sharedkey_old".into(),
            secret: "the old shared key secret".into(),
        },
    ];
    voicehooks::webhook::Acknowledger::new(
        BASE,
        queue.clone(),
        voicehooks::secrets::StaticTokens {
            current: Arc::new(credentials),
            previous: None,
        },
    )
}

fn sharedkey_call(secret: &str, settings: &str) -> Call {
    let params = status_params("ringing");
    let mut call = Call::form(PATH, &params);
    let signature = voicehooks::twilio::signature::compute_signature_with(
        voicehooks::twilio::signature::Algorithm::HmacSha256,
        secret,
        &call.url(),
        params.iter(),
    );
    call.header("x-twilio-signature", &signature);
    call.header("x-twilio-webhooks-signature-settings", settings);
    call
}

#[tokio::test]
async fn a_sharedkey_signature_is_accepted_with_either_key_of_a_rotation() {
    for (secret, sid) in [
        ("the new shared key secret", "webhooks_sharedkey_new"),
        ("the old shared key secret", "webhooks_sharedkey_old"),
    ] {
        let queue = Arc::new(MemoryQueue::default());
        let call = sharedkey_call(secret, &format!("key={sid}, algorithm = hmac_sha256"));
        let reply = call.send(&with_shared_keys(&queue)).await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{sid}: {}",
            reply.body
        );
        assert_eq!(queue.sent().len(), 1);
    }
}

#[tokio::test]
async fn a_sharedkey_header_with_the_wrong_key_algorithm_or_hmac_is_403() {
    let settings = "key=webhooks_sharedkey_new,algorithm=HMAC_SHA256";
    let cases = [
        // The secret of another key than the one the header names.
        sharedkey_call("the old shared key secret", settings),
        // An algorithm Twilio's libraries do not know.
        sharedkey_call(
            "the new shared key secret",
            "key=webhooks_sharedkey_new,algorithm=HMAC_SHA512",
        ),
        // The auth token's HMAC-SHA1 under SHA-256 settings.
        {
            let mut call = Call::form(PATH, &status_params("ringing"));
            call.header("x-twilio-webhooks-signature-settings", settings);
            call
        },
        // SHA-256 keyed with the auth token, not a SharedKey.
        sharedkey_call(TOKEN, settings),
    ];
    for call in cases {
        let queue = Arc::new(MemoryQueue::default());
        let reply = call.send(&with_shared_keys(&queue)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        assert!(queue.sent().is_empty());
    }
    // Without the header, the auth token's signature still works on the same stack.
    let queue = Arc::new(MemoryQueue::default());
    let reply = Call::form(PATH, &status_params("ringing"))
        .send(&with_shared_keys(&queue))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}
