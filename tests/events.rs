//! The samples under `events/`: current, and answered by the real functions as their names
//! promise when invoked through the Lambda Invoke API (what `cargo lambda invoke` does).

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use aws_sdk_lambda::primitives::Blob;
use devstack::sample_events;
use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};
use serde_json::Value;
use shared::store::DynamoCallStore;

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

    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let record = store
        .get_call("CAe1a2b3c4d5e6f708192a3b4c5d6e7f80")
        .await
        .unwrap()
        .expect("the sample call");
    assert_eq!(record.status.as_deref(), Some("completed"));
}
