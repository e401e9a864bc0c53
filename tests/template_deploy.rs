//! The local stack is what CloudFormation makes of the template: a copy of
//! `infra/template.yaml` with one queue setting, one function's environment value and one
//! mapping's batch size changed deploys a stack that follows all three, with no other edit.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use devstack::{LocalStack, StackOptions};
use voicehooks::config;
use voicehooks::events::Envelope;
use voicehooks::twilio::{CallStatus, StatusCallback};
use voicehooks_tests::{call_sid, status_params};

/// `template` with `from` replaced by `to` exactly once (so an edit cannot silently miss).
fn edit(template: &str, from: &str, to: &str) -> String {
    assert_eq!(
        template.matches(from).count(),
        1,
        "{from:?} once in the template"
    );
    template.replacen(from, to, 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stack_follows_a_copy_of_the_template() {
    let workspace = devstack::workspace::Workspace::locate();
    let original = std::fs::read_to_string(workspace.template()).unwrap();
    let changed = edit(
        &original,
        "      VisibilityTimeout: 180\n",
        "      VisibilityTimeout: 240\n",
    );
    let changed = edit(
        &changed,
        "VOICEHOOKS_ENQUEUE_DEADLINE_MS: \"1000\"",
        "VOICEHOOKS_ENQUEUE_DEADLINE_MS: \"750\"",
    );
    let changed = edit(
        &changed,
        "            Queue: !GetAtt StatusQueue.Arn\n            BatchSize: 10\n",
        "            Queue: !GetAtt StatusQueue.Arn\n            BatchSize: 4\n",
    );
    // Beside the original, so that its relative CodeUri (`..`) means the same.
    let copy = workspace.root.join("infra/.template-copy-under-test.yaml");
    std::fs::write(&copy, changed).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(copy.clone());

    let stack = LocalStack::start(StackOptions {
        label: "template-copy".into(),
        template: Some(copy),
        ..Default::default()
    })
    .await
    .expect("the copy deploys");

    // The queue setting, as SQS reports it.
    let attributes = aws_sdk_sqs::Client::new(&stack.sdk)
        .get_queue_attributes()
        .queue_url(&stack.resources.transcript.url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes.attributes().unwrap()[&QueueAttributeName::VisibilityTimeout],
        "240"
    );

    // The environment value, as Lambda has it and as the running function is given it.
    let voice = stack.deployment.function("webhook-voice").unwrap();
    assert_eq!(voice.env[config::ENQUEUE_DEADLINE_MS], "750");
    let spec = stack
        .functions
        .specs()
        .iter()
        .find(|s| s.name == "webhook-voice")
        .unwrap();
    assert!(
        spec.env
            .iter()
            .any(|(k, v)| k == config::ENQUEUE_DEADLINE_MS && v == "750"),
        "{:?}",
        spec.env
    );

    // The batch size, as the poller hands batches to the status worker: twelve call-status
    // events put on the queue at once come in batches of four.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    for chunk in (0..12u32).collect::<Vec<_>>().chunks(6) {
        let entries = chunk.iter().map(|n| {
            let sid = call_sid(*n);
            let params = status_params(&sid, CallStatus::Completed, Some(3));
            let callback = StatusCallback::parse(&params).unwrap();
            let envelope = Envelope::call_status(&callback, &params, Some(&format!("{sid}-c")));
            SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(envelope.to_json())
                .build()
                .unwrap()
        });
        sqs.send_message_batch()
            .queue_url(&stack.resources.status_queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .unwrap();
    }
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();
    let stats = &stack.status_poller.stats;
    assert_eq!(stats.received.load(Ordering::Relaxed), 12);
    assert_eq!(stats.largest_batch.load(Ordering::Relaxed), 4);
}

/// IAM is enforced on the emulator once the stack is deployed: unknown credentials are
/// refused, and each identity may do what its policy in the template allows and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn each_identity_may_do_what_its_template_policy_allows_and_nothing_more() {
    use aws_credential_types::Credentials;
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = voicehooks_tests::aws("iam-enforced").await;
    let r = &aws.resources;
    let as_identity = |credentials: &Credentials| {
        aws.sdk
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials.clone()),
            )
            .build()
    };

    // Credentials the account never issued.
    let stranger = as_identity(&Credentials::new("AKIAUNKNOWN", "nope", None, None, "test"));
    refused(
        aws_sdk_sqs::Client::new(&stranger)
            .get_queue_attributes()
            .queue_url(&r.status_queue_url)
            .send()
            .await,
        "unknown credentials",
    );

    // The status worker's role: its own queue and the table's call items, not the
    // recording queue, the secret, or a room's key outside `CONF#` for PutItem.
    let worker = as_identity(
        aws.deployment
            .function("status-worker")
            .unwrap()
            .credentials
            .as_ref()
            .unwrap(),
    );
    let sqs = aws_sdk_sqs::Client::new(&worker);
    sqs.receive_message()
        .queue_url(&r.status_queue_url)
        .send()
        .await
        .expect("the worker reads its queue");
    refused(
        sqs.receive_message()
            .queue_url(&r.recording.url)
            .send()
            .await,
        "the status worker reading the recording queue",
    );
    refused(
        aws_sdk_secretsmanager::Client::new(&worker)
            .get_secret_value()
            .secret_id(&r.twilio_secret_id)
            .send()
            .await,
        "the status worker reading the Twilio secret",
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&worker);
    let item = |pk: &str| {
        [
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            ("sk".to_owned(), AttributeValue::S("STATE".to_owned())),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    dynamodb
        .put_item()
        .table_name(&r.calls_table)
        .set_item(Some(item("CONF#CF1")))
        .send()
        .await
        .expect("a room's item, under the LeadingKeys condition");
    refused(
        dynamodb
            .put_item()
            .table_name(&r.calls_table)
            .set_item(Some(item("CALL#CA1")))
            .send()
            .await,
        "the status worker putting a call's item (only UpdateItem is granted there)",
    );

    // voicectl's operator: the DLQs and the table, not deleting the table or reading the
    // recordings.
    let operator = as_identity(aws.deployment.operator().unwrap());
    aws_sdk_sqs::Client::new(&operator)
        .get_queue_attributes()
        .queue_url(&r.status_dlq_url)
        .send()
        .await
        .expect("the operator reads a DLQ's depth");
    refused(
        aws_sdk_dynamodb::Client::new(&operator)
            .delete_table()
            .table_name(&r.calls_table)
            .send()
            .await,
        "the operator deleting the table",
    );
    refused(
        voicehooks::aws::s3_client(&operator)
            .list_objects_v2()
            .bucket(&r.recordings_bucket)
            .send()
            .await,
        "the operator listing the recordings",
    );
}

/// Asserts that the emulator's IAM refused a request (or never knew its key).
fn refused<T, E: std::fmt::Debug>(result: Result<T, E>, what: &str) {
    match result {
        Err(e) => {
            let e = format!("{e:?}");
            assert!(
                e.contains("AccessDenied")
                    || e.contains("InvalidClientTokenId")
                    || e.contains("403"),
                "{what}: {e}"
            );
        }
        Ok(_) => panic!("{what} was allowed"),
    }
}
