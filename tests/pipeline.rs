//! The status pipeline end to end on the local stack: HTTP POST → webhook-status (the real
//! binary under cargo-lambda) → SQS → event-source poller → status-worker → DynamoDB.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::time::{Duration, Instant};

use devstack::demo::{self, DemoOptions};
use devstack::{LocalStack, StackOptions};
use reqwest::StatusCode;
use voicehooks::calls::DynamoCallStore;
use voicehooks::config::QueueSettings;
use voicehooks::config::local;
use voicehooks::events::Envelope;
use voicehooks::twilio::{CallStatus, Params, StatusCallback};
use voicehooks::worker::{Disposition, QueuedMessage, Settler};
use voicehooks_tests::{FailOperation, call_sid, item_count, post_form, status_params};

async fn stack(label: &str) -> LocalStack {
    LocalStack::start(StackOptions {
        label: label.into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts (run `make test`, which builds the functions first)")
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicated_and_reordered_callbacks_end_in_each_calls_true_state() {
    let stack = stack("pipeline").await;
    let options = DemoOptions {
        calls: 40,
        seed: 7,
        concurrency: 8,
        duplicate_rate: 0.3,
        reorder_rate: 0.5,
    };
    let outcome = demo::play(&stack, &options).await.expect("the calls play");
    assert!(outcome.mismatches.is_empty(), "{:#?}", outcome.mismatches);
    assert!(outcome.report.duplicate_deliveries > 0 && outcome.report.reordered_legs > 0);
    // Every duplicate delivery was acknowledged, queued and absorbed (SQS may add its own).
    assert!(
        outcome.duplicates_absorbed() >= outcome.report.duplicate_deliveries,
        "{} < {}",
        outcome.duplicates_absorbed(),
        outcome.report.duplicate_deliveries
    );
    assert!(outcome.late_events() > 0, "reordering produced late events");
    println!(
        "40 calls: {} duplicates absorbed, {} late events recorded, ack p50 {:.1} ms",
        outcome.duplicates_absorbed(),
        outcome.late_events(),
        outcome.report.latency_ms(50.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_requests_enqueue_and_write_nothing() {
    let stack = stack("rejected").await;
    let target = stack.status_webhook_target();
    let public = stack.status_webhook_public();
    let token = Some(local::AUTH_TOKEN);
    let sid = call_sid(1);
    let good = status_params(&sid, CallStatus::Ringing, Some(1));
    let client = reqwest::Client::new();

    let cases: Vec<(&str, reqwest::Response, StatusCode, &str)> = vec![
        (
            "no signature",
            post_form(&target, &public, &good, None).await,
            StatusCode::FORBIDDEN,
            "missing X-Twilio-Signature",
        ),
        (
            "wrong token",
            post_form(&target, &public, &good, Some("wrong-token")).await,
            StatusCode::FORBIDDEN,
            "invalid X-Twilio-Signature",
        ),
        (
            "signed for another URL",
            post_form(
                &target,
                "https://elsewhere.example/twilio/status",
                &good,
                token,
            )
            .await,
            StatusCode::FORBIDDEN,
            "invalid X-Twilio-Signature",
        ),
        (
            "GET",
            client.get(&target).send().await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
        (
            "missing CallSid",
            post_form(
                &target,
                &public,
                &good.iter().filter(|(k, _)| *k != "CallSid").collect(),
                token,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "missing CallSid",
        ),
        (
            "unknown CallStatus",
            post_form(
                &target,
                &public,
                &status_params(&sid, CallStatus::Ringing, Some(1))
                    .iter()
                    .map(|(k, v)| (k, if k == "CallStatus" { "answered" } else { v }))
                    .collect(),
                token,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "unknown CallStatus",
        ),
        (
            "not UTF-8",
            client
                .post(&target)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b"CallSid=%FF%FE".to_vec())
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "not valid UTF-8",
        ),
        (
            "over 64 KiB",
            client
                .post(&target)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("CallSid={}", "A".repeat(70_000)))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "body over 64 KiB",
        ),
        (
            "JSON without bodySHA256",
            client
                .post(&target)
                .header("content-type", "application/json")
                .header("x-twilio-signature", "abc")
                .body(r#"{"CallSid":"CA1"}"#)
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "JSON body without bodySHA256",
        ),
    ];
    for (name, response, status, reason) in cases {
        assert_eq!(response.status(), status, "{name}");
        let body = response.text().await.unwrap();
        assert!(body.contains(reason), "{name}: {body:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack
            .queue_depth(&stack.resources.status_queue_url)
            .await
            .unwrap(),
        0,
        "nothing enqueued"
    );
    assert_eq!(
        item_count(&stack.sdk, &stack.resources.calls_table).await,
        0,
        "nothing written"
    );

    // The same request, correctly signed, goes through.
    assert_eq!(
        post_form(&target, &public, &good, token).await.status(),
        StatusCode::NO_CONTENT
    );
    stack
        .wait_until_drained(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        item_count(&stack.sdk, &stack.resources.calls_table).await,
        1
    );
}

/// The call `sid` once the stack has drained.
async fn drained_call(
    stack: &LocalStack,
    sid: &str,
    within: Duration,
) -> voicehooks::calls::CallRecord {
    stack.wait_until_drained(within).await.unwrap();
    DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    )
    .get_call(sid)
    .await
    .unwrap()
    .expect("the call is stored")
}

/// Waits until `check` holds, or fails with what it last saw.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> (bool, T),
) {
    let deadline = Instant::now() + within;
    loop {
        let (done, seen) = check().await;
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_sqs_does_not_take_is_spilled_drained_later_and_only_both_stores_down_is_503() {
    let stack = &stack("queue-down").await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let s3 = voicehooks::aws::s3_client(&stack.sdk);
    let r = &stack.resources;
    sqs.delete_queue()
        .queue_url(&r.status_queue_url)
        .send()
        .await
        .unwrap();
    let sid = call_sid(2);
    let params = status_params(&sid, CallStatus::Completed, Some(3));
    let post = |params| post_status(stack, params);
    // SQS is gone: the event is made durable in the spill, and Twilio gets its 2xx.
    assert_eq!(post(params.clone()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(stack.spill_depth().await.unwrap().events, 1);

    // The voice webhook, with the same queue gone, answers the caller and spills its
    // call.started.
    let (public, target) = stack
        .routes()
        .into_iter()
        .find(|(public, _)| public.ends_with("/twilio/voice"))
        .unwrap();
    let response = post_form(&target, &public, &params, Some(local::AUTH_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let twiml = response.text().await.unwrap();
    voicehooks::twilio::twiml::check(&twiml).unwrap();
    assert!(twiml.contains("<Gather "), "{twiml}");
    assert_eq!(stack.spill_depth().await.unwrap().events, 2);

    // The drainer keeps them while SQS refuses, and once the queue is back (the same name,
    // so the same URL) puts them on it: the worker applies both, and the spill empties.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(stack.spill_depth().await.unwrap().events, 2, "nothing lost");
    sqs.create_queue()
        .queue_name(r.names.status_queue())
        .send()
        .await
        .unwrap();
    let store = DynamoCallStore::new(aws_sdk_dynamodb::Client::new(&stack.sdk), &r.calls_table);
    eventually(
        "the spilled events applied",
        Duration::from_secs(60),
        async || {
            let call = store.get_call(&sid).await.unwrap();
            let spill = stack.spill_depth().await.unwrap().events;
            let done = spill == 0
                && call
                    .as_ref()
                    .is_some_and(|c| c.status.as_deref() == Some("completed") && c.flow.is_some());
            (done, (spill, call))
        },
    )
    .await;

    // Both stores down: only now is the answer 503, and nothing is written.
    sqs.delete_queue()
        .queue_url(&r.status_queue_url)
        .send()
        .await
        .unwrap();
    s3.delete_bucket()
        .bucket(&r.spill_bucket)
        .send()
        .await
        .unwrap();
    let other = call_sid(0x22);
    let response = post(status_params(&other, CallStatus::Ringing, Some(1))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        "event not queued, retry later\n"
    );
    assert!(store.get_call(&other).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_secrets_manager_down_warm_webhooks_keep_checking_and_cold_ones_check_later() {
    use devstack::faults::{FaultPlan, Outage};
    let stack = &LocalStack::start(StackOptions {
        label: "secrets-down".into(),
        secret_ttl: Some(Duration::from_secs(1)),
        faults: Some(FaultPlan {
            outages: vec![Outage {
                service: "secretsmanager",
                from: Duration::ZERO,
                lasts: Duration::from_secs(20),
            }],
            ..FaultPlan::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let (voice_public, voice_target) = stack
        .routes()
        .into_iter()
        .find(|(public, _)| public.ends_with("/twilio/voice"))
        .unwrap();
    let post = |sid: &str, status, seq| {
        let params = status_params(sid, status, Some(seq));
        async move { post_status(stack, params).await.status() }
    };
    let sid = call_sid(0x5ec);
    // Warm: the token is read while Secrets Manager is up.
    assert_eq!(
        post(&sid, CallStatus::Ringing, 1).await,
        StatusCode::NO_CONTENT
    );
    let ring = Envelope::call_status(
        &StatusCallback::parse(&status_params(&sid, CallStatus::Ringing, Some(1))).unwrap(),
        &status_params(&sid, CallStatus::Ringing, Some(1)),
        None,
    );
    let voice = post_form(
        &voice_target,
        &voice_public,
        &ring.params,
        Some(local::AUTH_TOKEN),
    );
    assert_eq!(voice.await.status(), StatusCode::OK);

    // Secrets Manager goes down; past the 1 s TTL the last good token still checks
    // signatures (and forgeries are still refused).
    stack.proxy.as_ref().unwrap().start_clock();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        post(&sid, CallStatus::Completed, 3).await,
        StatusCode::NO_CONTENT
    );
    let forged = post_form(
        &stack.status_webhook_target(),
        &stack.status_webhook_public(),
        &status_params(&sid, CallStatus::Completed, Some(4)),
        Some("not-the-token"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A cold start cannot read the secret: a callback is spilled whole, unverified, and
    // answered 204 (a forgery too: it cannot be told yet); a caller hears an apology that
    // names no flow.
    stack
        .functions
        .kill_and_restart("webhook-status", 0)
        .unwrap();
    stack
        .functions
        .kill_and_restart("webhook-voice", 0)
        .unwrap();
    let cold = call_sid(0x5ed);
    assert_eq!(
        post(&cold, CallStatus::Ringing, 1).await,
        StatusCode::NO_CONTENT
    );
    let forged_cold = call_sid(0xf0f);
    let forged = post_form(
        &stack.status_webhook_target(),
        &stack.status_webhook_public(),
        &status_params(&forged_cold, CallStatus::Completed, Some(4)),
        Some("not-the-token"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::NO_CONTENT);
    assert_eq!(stack.spill_depth().await.unwrap().events, 2);
    let response = post_form(
        &voice_target,
        &voice_public,
        &ring.params,
        Some(local::AUTH_TOKEN),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let twiml = response.text().await.unwrap();
    voicehooks::twilio::twiml::check(&twiml).unwrap();
    for revealing in ["<Gather", "<Dial", "<Record", "http"] {
        assert!(!twiml.contains(revealing), "{revealing} in {twiml}");
    }

    // What was accepted was applied; once Secrets Manager answers again, the drainer checks
    // what was spilled unverified as the webhook would have: the genuine callback is queued
    // and applied, the forgery deleted and never applied.
    let call = drained_call(stack, &sid, Duration::from_secs(90)).await;
    assert_eq!(call.status.as_deref(), Some("completed"));
    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let checked_later = store.get_call(&cold).await.unwrap().expect("applied");
    assert_eq!(checked_later.status.as_deref(), Some("ringing"));
    assert!(store.get_call(&forged_cold).await.unwrap().is_none());
    assert_eq!(stack.spill_depth().await.unwrap().events, 0);
    let drainer = voicehooks_tests::instance_logs(&stack.log_dir, "spill-drainer");
    assert!(drainer.contains("failed its checks; deleted"), "{drainer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_distinct_signed_deliveries_cannot_outgrow_a_call_or_keep_out_its_end() {
    let stack = &stack("replays").await;
    let sid = call_sid(0x1000);
    let post = |params| post_status(stack, params);
    // One captured `ringing`, replayed with a fresh (unsigned) idempotency token each time,
    // and an 8 KiB one: the same event, every time.
    let ringing = status_params(&sid, CallStatus::Ringing, Some(0));
    for i in 0..20 {
        let token = if i == 0 {
            "x".repeat(8192)
        } else {
            format!("fresh-{i}")
        };
        let response = reqwest::Client::new()
            .post(stack.status_webhook_target())
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "x-twilio-signature",
                voicehooks::twilio::signature::compute_signature(
                    local::AUTH_TOKEN,
                    &stack.status_webhook_public(),
                    ringing.iter(),
                ),
            )
            .header("i-twilio-idempotency-token", token)
            .body(ringing.to_form())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    // Then 1,000 distinct signed deliveries (each its own sequence number), 16 at a time.
    use futures::StreamExt;
    let statuses: Vec<StatusCode> = futures::stream::iter(1..=1000u32)
        .map(|seq| {
            let status = if seq % 2 == 0 {
                CallStatus::Ringing
            } else {
                CallStatus::Initiated
            };
            let params = status_params(&sid, status, Some(seq));
            async move { post(params).await.status() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT));
    // The real end of the call still applies.
    assert_eq!(
        post(status_params(&sid, CallStatus::Completed, Some(1001)))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let call = drained_call(stack, &sid, Duration::from_secs(300)).await;
    assert_eq!(call.status.as_deref(), Some("completed"));
    assert!(call.timeline.len() <= voicehooks::calls::MAX_TIMELINE_ENTRIES);
    assert!(call.timeline_overflow > 0, "{call:?}");
    assert!(
        call.duplicates >= 19,
        "the replays were one event: {}",
        call.duplicates
    );
    // The item, as DynamoDB holds it, stays far below its 400 KB.
    let item = voicehooks_tests::stored_item(
        &stack.sdk,
        &stack.resources.calls_table,
        (&format!("CALL#{sid}"), "STATE"),
    )
    .await;
    let size = voicehooks_tests::item_size(&item);
    assert!(size < 200 * 1024, "the call's item is {size} bytes");
    println!(
        "1,020 deliveries for one call: item {size} bytes, {} listed, {} overflowed, {} duplicates",
        call.timeline.len(),
        call.timeline_overflow,
        call.duplicates
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_rest_in_the_dlq_without_blocking_their_neighbours() {
    let stack = stack("poison").await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let good_sid = call_sid(3);
    let good: Vec<String> = [(CallStatus::Ringing, 1), (CallStatus::Completed, 3)]
        .into_iter()
        .map(|(status, seq)| {
            let params = status_params(&good_sid, status, Some(seq));
            Envelope::call_status(&StatusCallback::parse(&params).unwrap(), &params, None).to_json()
        })
        .collect();
    let future_version = good[0].replacen("\"v\":1", "\"v\":2", 1);
    let poison = [
        "not json at all".to_owned(),
        r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#.to_owned(),
        future_version,
    ];
    // Poison first, so the good ones share their batches.
    for body in poison.iter().chain(good.iter()) {
        sqs.send_message()
            .queue_url(&stack.resources.status_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dlq = stack
            .queue_depth(&stack.resources.status_dlq_url)
            .await
            .unwrap();
        let source = stack
            .queue_depth(&stack.resources.status_queue_url)
            .await
            .unwrap();
        if dlq == poison.len() as u64 && source == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "DLQ {dlq}, source {source}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let record = store
        .get_call(&good_sid)
        .await
        .unwrap()
        .expect("the good events were applied");
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(record.timeline.len(), 2);

    // The DLQ holds exactly the poison, untouched, for ops to inspect and redrive, each
    // with why the worker gave up on the queue's last receive.
    let received = sqs
        .receive_message()
        .queue_url(&stack.resources.status_dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    for message in received.messages() {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            attribute("failure_reason").starts_with("gave up after 5 receives: not a call event: "),
            "{message:?}"
        );
        assert_eq!(attribute("failed_by"), "status-worker");
    }
    let mut bodies: Vec<&str> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .collect();
    bodies.sort_unstable();
    let mut expected: Vec<&str> = poison.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(bodies, expected);
}

/// The worker's last words: a message still failing on the queue's last receive goes to the
/// DLQ with its reason and leaves the queue; before that it is retried later; and when the
/// DLQ refuses the send it stays on the queue for SQS's own move, never lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_failing_on_its_last_receive_is_dead_lettered_with_its_reason() {
    let aws = voicehooks_tests::aws("last-receive").await;
    let r = &aws.resources;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let queue = QueueSettings {
        queue_url: r.status_queue_url.clone(),
        dead_letter_queue_url: r.status_dlq_url.clone(),
        retry_base: Duration::from_secs(1),
        max_receives: 5,
    };
    let body = "not an envelope";
    sqs.send_message()
        .queue_url(&r.status_queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&r.status_queue_url)
        .send()
        .await
        .unwrap();
    let handle = received.messages()[0].receipt_handle().unwrap();
    let message = |receive_count| QueuedMessage {
        message_id: "m1",
        body,
        receipt_handle: handle,
        receive_count,
        ..QueuedMessage::default()
    };
    let retry = Disposition::retry("the call store failed: throttled");
    let dlq_depth = || async {
        devstack::local_stack::queue_depth(&aws.sdk, &r.status_dlq_url)
            .await
            .unwrap()
    };

    let settler = Settler::new(sqs.clone(), &queue, "status-worker");
    assert!(
        settler.settle(&message(4), &retry).await,
        "receive 4: retried"
    );
    assert_eq!(dlq_depth().await, 0);

    let refusing = Settler::new(
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&aws.sdk)
                .interceptor(FailOperation::always("SendMessage"))
                .build(),
        ),
        &queue,
        "status-worker",
    );
    assert!(
        refusing.settle(&message(5), &retry).await,
        "the DLQ refused: left on the queue for SQS to move"
    );
    assert_eq!(dlq_depth().await, 0);

    assert!(
        !settler.settle(&message(5), &retry).await,
        "receive 5: dead-lettered, so deleted from the queue"
    );
    let letters = sqs
        .receive_message()
        .queue_url(&r.status_dlq_url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let letter = &letters.messages()[0];
    assert_eq!(letter.body(), Some(body));
    let reason = letter.message_attributes().unwrap()["failure_reason"]
        .string_value()
        .unwrap();
    assert_eq!(
        reason,
        "gave up after 5 receives: the call store failed: throttled"
    );
}

/// `params` posted to the stack's status webhook, signed as Twilio signs.
async fn post_status(stack: &LocalStack, params: Params) -> reqwest::Response {
    post_form(
        &stack.status_webhook_target(),
        &stack.status_webhook_public(),
        &params,
        Some(local::AUTH_TOKEN),
    )
    .await
}
