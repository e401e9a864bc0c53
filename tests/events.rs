//! The samples under `events/`: current, and answered by the real functions as their names
//! promise when invoked through the Lambda Invoke API (what `cargo lambda invoke` does).

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use aws_sdk_lambda::primitives::Blob;
use devstack::sample_events;
use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};
use serde_json::Value;
use voicehooks::calls::DynamoCallStore;
use voicehooks::recording::{DynamoRecordingStore, RecordingStore};

#[test]
fn committed_events_are_current() {
    let root = Workspace::locate().events();
    for event in sample_events::all() {
        let path = root.join(&event.path);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == sample_events::render(&event),
            "{} is stale: run `cargo run -p devstack -- events`",
            path.display()
        );
    }
}

async fn invoke(lambda: &aws_sdk_lambda::Client, function: &str, file: &str) -> Value {
    let payload = std::fs::read(Workspace::locate().events().join(file)).expect("sample event");
    let output = lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send()
        .await
        .expect("invoke");
    assert!(
        output.function_error().is_none(),
        "{file}: {:?}",
        output.function_error()
    );
    serde_json::from_slice(output.payload().expect("a response").as_ref()).expect("JSON response")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sample_event_gets_the_answer_its_name_promises() {
    let stack = LocalStack::start(StackOptions {
        label: "events".into(),
        ..Default::default()
    })
    .await
    .expect("stack");
    let config = aws_sdk_lambda::config::Builder::from(&stack.sdk)
        .endpoint_url(stack.functions.endpoint())
        .build();
    let lambda = aws_sdk_lambda::Client::from_conf(config);

    for event in sample_events::all()
        .iter()
        .filter(|e| e.path.starts_with("webhook-status/"))
    {
        let response = invoke(&lambda, "webhook-status", &event.path).await;
        let expected = if event.path.contains("bad-signature") {
            403
        } else if event.path.contains("wrong-method") {
            405
        } else {
            204
        };
        assert_eq!(
            response["statusCode"], expected,
            "{}: {response}",
            event.path
        );
    }

    // Each voice sample's name says what its TwiML does.
    let voice_expectations = [
        ("new-call-main-menu", "<Gather input=\"dtmf speech\""),
        ("new-call-sales-forward", "<Number statusCallback="),
        ("new-call-standup-conference", ">daily-standup</Conference>"),
        ("new-call-voicemail", "<Record action="),
        ("softphone-outbound", ">+16285550199</Number>"),
        ("menu-pressed-1-sales", "Connecting you to sales."),
        ("menu-no-input-retry", "no_input=1&amp;invalid=0"),
        ("dial-busy-voicemail", "<Record action="),
        ("recorded-goodbye", "Thank you. Goodbye.</Say><Hangup/>"),
    ];
    for (name, expected) in voice_expectations {
        let path = format!("webhook-voice/{name}.json");
        let response = invoke(&lambda, "webhook-voice", &path).await;
        assert_eq!(response["statusCode"], 200, "{path}: {response}");
        assert_eq!(
            response["headers"]["content-type"],
            "text/xml; charset=utf-8"
        );
        let body = response["body"].as_str().unwrap();
        voicehooks::twilio::twiml::check(body).unwrap();
        assert!(body.contains(expected), "{path}: {body}");
    }
    let voice_samples = sample_events::all()
        .iter()
        .filter(|e| e.path.starts_with("webhook-voice/"))
        .count();
    assert_eq!(
        voice_samples,
        voice_expectations.len() + 1,
        "every voice sample is checked"
    );
    let response = invoke(
        &lambda,
        "webhook-voice",
        "webhook-voice/rejected-bad-signature.json",
    )
    .await;
    assert_eq!(response["statusCode"], 403, "{response}");

    let response = invoke(&lambda, "status-worker", "status-worker/sqs-batch.json").await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    let response = invoke(
        &lambda,
        "status-worker",
        "status-worker/sqs-batch-with-poison.json",
    )
    .await;
    let mut failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            "poison-foreign-json",
            "poison-future-version",
            "poison-not-json"
        ]
    );

    // Recordings: the webhooks acknowledge, the workers decide without a batch item failure
    // except the state change of a job that never ran (retried).
    for (function, path, expected) in [
        ("webhook-recording", "webhook-recording/completed.json", 204),
        (
            "webhook-recording",
            "webhook-recording/in-progress.json",
            204,
        ),
        (
            "webhook-recording",
            "webhook-recording/rejected-bad-signature.json",
            403,
        ),
        (
            "webhook-transcription",
            "webhook-transcription/completed.json",
            204,
        ),
    ] {
        let response = invoke(&lambda, function, path).await;
        assert_eq!(response["statusCode"], expected, "{path}: {response}");
    }
    for (path, expected) in [
        ("softphone-token/signed-in.json", 200),
        ("softphone-token/identity-refused.json", 400),
        ("softphone-token/no-authorizer.json", 401),
    ] {
        let response = invoke(&lambda, "softphone-token", path).await;
        assert_eq!(response["statusCode"], expected, "{path}: {response}");
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        if expected == 200 {
            assert_eq!(body["identity"], "alice", "{path}");
        } else {
            assert!(body["error"].is_string(), "{path}: {body}");
        }
    }
    let response = invoke(
        &lambda,
        "recording-worker",
        "recording-worker/sqs-batch.json",
    )
    .await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    let dead = aws_sdk_sqs::Client::new(&stack.sdk)
        .receive_message()
        .queue_url(&stack.resources.recording.dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("failure_reason")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(
        dead.iter().any(|m| m
            .message_attributes()
            .and_then(|a| a["failure_reason"].string_value())
            .is_some_and(|r| r.contains("refused"))),
        "the refused URL is dead-lettered with its reason: {dead:?}"
    );
    let response = invoke(
        &lambda,
        "transcript-worker",
        "transcript-worker/sqs-batch.json",
    )
    .await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "transcribe-state-change"}]),
        "{response}"
    );
    let recordings = DynamoRecordingStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let recording = recordings
        .get(
            "CAe1a2b3c4d5e6f708192a3b4c5d6e7f80",
            "RE5a3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d",
        )
        .await
        .unwrap()
        .expect("the sample recording");
    assert_eq!(recording.state.as_deref(), Some("absent"));
    assert_eq!(
        recording.twilio_transcription_text.as_deref(),
        Some("Hi, this is Sam, please call me back.")
    );

    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    // The room's batch: its events out of order and one twice; the room as Twilio ran it.
    let response = invoke(
        &lambda,
        "status-worker",
        "status-worker/sqs-batch-conference.json",
    )
    .await;
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    let room = store
        .get_conference(sample_events::CONFERENCE_SID)
        .await
        .unwrap()
        .expect("the sample room");
    assert_eq!(
        (
            room.status.as_str(),
            room.end_reason.as_deref(),
            room.events
        ),
        ("completed", Some("last-participant-left"), 4),
        "{room:?}"
    );
    let [caller] = room.participants.as_slice() else {
        panic!("one participant: {room:?}");
    };
    assert!(!caller.in_room && caller.joined_at.is_some(), "{caller:?}");
    assert_eq!(caller.left_reason.as_deref(), Some("participant_hung_up"));
    let joined = store.get_call(&caller.call_sid).await.unwrap().unwrap();
    assert_eq!(joined.conferences, [sample_events::CONFERENCE_SID]);

    let record = store
        .get_call("CAe1a2b3c4d5e6f708192a3b4c5d6e7f80")
        .await
        .unwrap()
        .expect("the sample call");
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(
        record.flow.as_deref(),
        Some("main-menu"),
        "the call.started sample"
    );
}
