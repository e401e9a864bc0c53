//! `POST /twilio/recording` and `POST /twilio/transcription` follow the acknowledge contract:
//! each named bad input gets its status and one-line reason, and nothing is enqueued.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

mod common;

use std::sync::Arc;

use common::*;
use http::StatusCode;
use voicehooks::events::EventKind;
use voicehooks::twilio::Params;
use voicehooks::webhook::Reply;

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const RECORDING_SID: &str = "RE0123456789abcdef0123456789abcdef";

fn recording(status: &str) -> Params {
    [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("RecordingSid", RECORDING_SID),
        ("RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000001/Recordings/RE0123456789abcdef0123456789abcdef"),
        ("RecordingStatus", status),
        ("RecordingDuration", "42"),
        ("RecordingChannels", "2"),
        ("RecordingSource", "DialVerb"),
    ]
    .into_iter()
    .collect()
}

fn transcription(status: &str) -> Params {
    [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("RecordingSid", RECORDING_SID),
        ("TranscriptionSid", "TR0123456789abcdef0123456789abcdef"),
        ("TranscriptionStatus", status),
        ("TranscriptionText", "Hello, please call me back."),
    ]
    .into_iter()
    .collect()
}

fn without(params: &Params, name: &str) -> Params {
    params.iter().filter(|(k, _)| *k != name).collect()
}

async fn recording_reply(queue: &Arc<MemoryQueue>, call: &Call) -> Reply {
    acknowledger(queue, None)
        .recording_status(&call.request())
        .await
}

async fn transcription_reply(queue: &Arc<MemoryQueue>, call: &Call) -> Reply {
    acknowledger(queue, None)
        .transcription(&call.request())
        .await
}

#[tokio::test]
async fn every_recording_status_is_queued_once_per_recording_and_status() {
    let queue = Arc::new(MemoryQueue::default());
    for status in ["in-progress", "completed", "absent", "failed"] {
        let reply =
            recording_reply(&queue, &Call::form("/twilio/recording", &recording(status))).await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{status}: {}",
            reply.body
        );
    }
    let sent = queue.sent();
    assert_eq!(sent.len(), 4);
    assert!(
        sent.iter()
            .all(|e| e.kind == EventKind::RecordingStatus && e.call_sid == CALL_SID)
    );
    assert_eq!(
        sent[1].idempotency_key,
        format!("{RECORDING_SID}:recording.status:completed")
    );
    assert_eq!(sent[1].params, recording("completed"));

    // Twilio's retry (or anyone's replay) carries its own unsigned token: the same event.
    let mut retried = Call::form("/twilio/recording", &recording("completed"));
    retried.header("i-twilio-idempotency-token", "idem-7");
    recording_reply(&queue, &retried).await;
    assert_eq!(queue.sent()[4].idempotency_key, sent[1].idempotency_key);
    assert_eq!(queue.sent()[4].delivery_token.as_deref(), Some("idem-7"));
}

#[tokio::test]
async fn bad_recording_callbacks_are_refused_and_nothing_is_queued() {
    let queue = Arc::new(MemoryQueue::default());
    let completed = recording("completed");
    let mut forged = Call::form("/twilio/recording", &completed);
    forged.sign_with("not-the-token", &forged.url(), &completed);
    let cases = [
        (
            Call::form("/twilio/recording", &without(&completed, "RecordingUrl")),
            StatusCode::BAD_REQUEST,
            "missing RecordingUrl",
        ),
        (
            Call::form("/twilio/recording", &without(&completed, "RecordingSid")),
            StatusCode::BAD_REQUEST,
            "missing RecordingSid",
        ),
        (
            Call::form("/twilio/recording", &recording("exploded")),
            StatusCode::BAD_REQUEST,
            "not a valid recording status",
        ),
        (
            Call::form(
                "/twilio/recording",
                &recording("completed")
                    .iter()
                    .map(|(k, v)| (k, if k == "RecordingSid" { "CA1" } else { v }))
                    .collect(),
            ),
            StatusCode::BAD_REQUEST,
            "RecordingSid is not a valid SID",
        ),
        (forged, StatusCode::FORBIDDEN, "invalid X-Twilio-Signature"),
    ];
    for (call, status, reason) in cases {
        let reply = recording_reply(&queue, &call).await;
        assert_eq!(reply.status, status, "{reason}: {}", reply.body);
        assert!(reply.body.contains(reason), "{reason}: {}", reply.body);
    }
    // An absent recording has no media, so no URL is needed.
    let absent = without(&recording("absent"), "RecordingUrl");
    assert_eq!(
        recording_reply(&queue, &Call::form("/twilio/recording", &absent))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(queue.sent().len(), 1);
}

#[tokio::test]
async fn a_recording_callback_that_cannot_be_queued_gets_503() {
    let queue = Arc::new(MemoryQueue {
        down: true.into(),
        ..Default::default()
    });
    let reply = recording_reply(
        &queue,
        &Call::form("/twilio/recording", &recording("completed")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn transcriptions_are_queued_and_bad_ones_refused() {
    let queue = Arc::new(MemoryQueue::default());
    for status in ["completed", "failed"] {
        let reply = transcription_reply(
            &queue,
            &Call::form("/twilio/transcription", &transcription(status)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    let sent = queue.sent();
    assert_eq!(sent[0].kind, EventKind::TranscriptionTwilio);
    assert_eq!(
        sent[0].idempotency_key,
        "TR0123456789abcdef0123456789abcdef:transcription.twilio:completed"
    );
    for (params, reason) in [
        (
            without(&transcription("completed"), "TranscriptionSid"),
            "missing TranscriptionSid",
        ),
        (
            without(&transcription("completed"), "TranscriptionStatus"),
            "missing TranscriptionStatus",
        ),
        (
            without(&transcription("completed"), "RecordingSid"),
            "missing RecordingSid",
        ),
    ] {
        let reply =
            transcription_reply(&queue, &Call::form("/twilio/transcription", &params)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.body.contains(reason), "{reason}: {}", reply.body);
    }
    assert_eq!(queue.sent().len(), 2);
}
