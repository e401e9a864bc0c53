//! `make bench`'s cold-start probe on a real function binary: it answers its first event
//! through the stand-in Runtime API, and the SDK interceptor puts that invocation's AWS calls
//! in its EMF line (one Secrets Manager read, one SQS send).

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use devstack::coldstart;
use devstack::local_stack::{STATUS_WORKER, WEBHOOK_STATUS};
use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_answers_and_counts_its_aws_calls() {
    let stack = LocalStack::start(StackOptions {
        label: "coldstart".into(),
        ..Default::default()
    })
    .await
    .expect("stack");
    let workspace = Workspace::locate();
    let spec = |name: &str| {
        stack
            .functions
            .specs()
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };

    let event = std::fs::read(workspace.events().join("webhook-status/completed.json")).unwrap();
    let log = stack.log_dir.join("coldstart-probe-webhook-status.log");
    let cold = coldstart::measure(
        &workspace.function_binary(WEBHOOK_STATUS),
        &spec(WEBHOOK_STATUS),
        event,
        &log,
    )
    .await
    .expect("a first answer");
    assert!(cold.ok, "answered with an invocation error");
    assert!(cold.ready <= cold.first_response, "{cold:?}");

    let emf: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "one EMF line for the one invocation: {emf:?}");
    let line = &emf[0];
    assert_eq!(line["Function"], WEBHOOK_STATUS);
    assert_eq!(line["WebhooksAccepted"], 1.0, "{line}");
    assert_eq!(line["Aws.SecretsManager.GetSecretValue"], 1.0, "{line}");
    assert_eq!(line["Aws.SQS.SendMessage"], 1.0, "{line}");
    let waits = line["AwsCallLatency"]
        .as_array()
        .expect("one wait per call");
    assert_eq!(waits.len(), 2, "{line}");

    // An event the function cannot read is answered on the Runtime API's error path.
    let cold = coldstart::measure(
        &workspace.function_binary(STATUS_WORKER),
        &spec(STATUS_WORKER),
        br#""not an SQS event""#.to_vec(),
        &stack.log_dir.join("coldstart-probe-status-worker.log"),
    )
    .await
    .expect("a first answer");
    assert!(!cold.ok, "an unreadable event is an invocation error");
}
