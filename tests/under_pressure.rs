//! What the pipeline does when AWS is slow or down, through the real binaries on the local
//! stack: a message a batch deadline never reached is handed back without spending its
//! receives; a webhook's queue breaker opens in an SQS outage and closes after it; and the
//! local stack gives each request in flight an instance, as Lambda does, within the
//! function's concurrency.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::time::Duration;

use devstack::faults::{FaultPlan, Outage, Slowdown};
use devstack::local_stack::{SPILL_DRAINER, STATUS_WORKER, WEBHOOK_STATUS};
use devstack::poller::{Poller, PollerConfig};
use devstack::{LocalStack, StackOptions};
use reqwest::StatusCode;
use voicehooks::calls::DynamoCallStore;
use voicehooks::config::local;
use voicehooks::twilio::{CallStatus, Params};
use voicehooks_tests::{call_sid, instance_logs, post_form, status_params};

async fn post_status(stack: &LocalStack, params: Params) -> StatusCode {
    post_form(
        &stack.status_webhook_target(),
        &stack.status_webhook_public(),
        &params,
        Some(local::AUTH_TOKEN),
    )
    .await
    .status()
}

/// The `handed_back` counts the status worker logged.
fn hand_backs(stack: &LocalStack) -> Vec<u64> {
    instance_logs(&stack.log_dir, STATUS_WORKER)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["outcome"] == "handed-back")
        .filter_map(|l| l["handed_back"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_a_slow_table_keeps_waiting_outlive_more_deadlines_than_max_receive_count() {
    let sid = call_sid(0xdead1);
    let mut stack = LocalStack::start(StackOptions {
        label: "hand-back".into(),
        // One call's item is hot: each of its writes answers 1 s late.
        faults: Some(FaultPlan {
            slowdowns: vec![Slowdown {
                service: "dynamodb",
                from: Duration::ZERO,
                lasts: Duration::from_secs(3600),
                delay: Duration::from_secs(1),
                matching: Some(sid.clone()),
            }],
            ..FaultPlan::default()
        }),
        // 4 s: each batch has 2.5 s before its deadline, room for one event (one write, or
        // two for a late one) and not for a second.
        timeouts: vec![(STATUS_WORKER, Duration::from_secs(4))],
        ..Default::default()
    })
    .await
    .unwrap();
    stack.proxy.as_ref().unwrap().start_clock();
    // The test plays the event source mapping, one batch at a time, so each round is one
    // batch of the call's events.
    stack.status_poller.stop().await;
    // Its pollers' last long polls (1 s) may still be waiting at the queue: let them end
    // empty, or they would take messages no one then invokes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mapping = PollerConfig::from_mapping(
        stack.deployment.mapping(STATUS_WORKER).unwrap(),
        stack.functions.timeout(STATUS_WORKER).unwrap(),
    );
    let statuses = [
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
    ];
    let events: Vec<(CallStatus, u32)> = (0..10)
        .map(|seq| (statuses[(seq as usize).min(3)], seq))
        .collect();
    for (status, seq) in &events {
        let params = status_params(&sid, *status, Some(*seq));
        assert_eq!(post_status(&stack, params).await, StatusCode::NO_CONTENT);
    }
    // Each batch applies one event in its 2.5 s and cannot start the next: the worker's
    // measured pace says it would not finish. Those are handed back, fresh, round after
    // round, and no receive is spent on any of them.
    let mut rounds = 0;
    let mut empty = 0;
    while empty < 3 {
        rounds += 1;
        assert!(rounds < 60, "the queue never emptied");
        let held = Poller::one_batch(&stack.sdk, &stack.functions.endpoint(), &mapping).await;
        empty = if held == 0 { empty + 1 } else { 0 };
    }

    let most = hand_backs(&stack).into_iter().max().unwrap_or(0);
    let max_receives: u64 = stack.deployment.function(STATUS_WORKER).unwrap().env
        [voicehooks::config::MAX_RECEIVE_COUNT]
        .parse()
        .unwrap();
    assert!(
        most > max_receives,
        "an event was handed back at most {most} times (maxReceiveCount {max_receives})"
    );
    let cut_off = instance_logs(&stack.log_dir, STATUS_WORKER)
        .matches("the invocation's deadline came first")
        .count();
    assert_eq!(cut_off, 0, "nothing was cut off mid-write");
    assert_eq!(
        stack
            .queue_depth(&stack.resources.status_dlq_url)
            .await
            .unwrap(),
        0,
        "nothing dead-lettered"
    );
    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let call = store
        .get_call(&sid)
        .await
        .unwrap()
        .expect("the call is stored");
    assert_eq!(call.status.as_deref(), Some("completed"));
    assert_eq!(
        call.timeline.len(),
        events.len(),
        "each event once: {:?}",
        call.timeline
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhooks_breaker_opens_in_an_sqs_outage_and_closes_after_it() {
    let stack = LocalStack::start(StackOptions {
        label: "breaker".into(),
        faults: Some(FaultPlan {
            outages: vec![Outage {
                service: "sqs",
                from: Duration::ZERO,
                lasts: Duration::from_secs(12),
            }],
            ..FaultPlan::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    stack.proxy.as_ref().unwrap().start_clock();
    // Through the outage every callback is answered 204: the first few after SQS refused
    // them, the rest spilled without asking while the breaker is open.
    let sids: Vec<String> = (0..20).map(|n| call_sid(0xb0_0000 + n)).collect();
    for sid in &sids {
        let params = status_params(sid, CallStatus::Ringing, Some(1));
        assert_eq!(post_status(&stack, params).await, StatusCode::NO_CONTENT);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // After it, the next probe goes through and closes the breaker.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for sid in &sids {
        let params = status_params(sid, CallStatus::Completed, Some(2));
        assert_eq!(post_status(&stack, params).await, StatusCode::NO_CONTENT);
    }
    stack
        .wait_until_drained(Duration::from_secs(120))
        .await
        .unwrap();

    let log = instance_logs(&stack.log_dir, WEBHOOK_STATUS);
    let lines = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    assert!(lines(r#""breaker":"open""#) > 0, "the breaker never opened");
    assert!(
        lines(r#""breaker":"closed""#) > 0,
        "the breaker never closed"
    );
    assert!(
        lines(r#""queue_error":"the queue's breaker is open""#) > 0,
        "nothing was spilled without asking SQS"
    );
    // Everything spilled was drained onto the queue and applied.
    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    for sid in &sids {
        let call = store.get_call(sid).await.unwrap().expect("stored");
        assert_eq!(call.status.as_deref(), Some("completed"), "{sid}");
        assert_eq!(call.timeline.len(), 2, "{sid}: {:?}", call.timeline);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_in_flight_gets_an_instance_up_to_the_functions_concurrency() {
    let stack = LocalStack::start(StackOptions {
        label: "scaling".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(stack.functions.instances(WEBHOOK_STATUS), 1, "one warm");
    // Twelve callbacks at once: none waits for another's instance.
    let posts = (0..12).map(|n| {
        let params = status_params(&call_sid(0x5ca1e + n), CallStatus::Ringing, Some(1));
        let stack = &stack;
        async move { post_status(stack, params).await }
    });
    for status in futures::future::join_all(posts).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let instances = stack.functions.instances(WEBHOOK_STATUS);
    assert!(instances > 1 && instances <= 12, "{instances} instances");

    // The spill drainer's reserved concurrency is 1: invoked four times at once, it still
    // runs one instance, and every invocation is served in turn.
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&stack.sdk)
            .endpoint_url(stack.functions.endpoint())
            .build(),
    );
    let scheduled = serde_json::json!({
        "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-07T00:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    })
    .to_string();
    let invokes = (0..4).map(|_| {
        lambda
            .invoke()
            .function_name(SPILL_DRAINER)
            .payload(aws_sdk_lambda::primitives::Blob::new(scheduled.clone()))
            .send()
    });
    for invoked in futures::future::join_all(invokes).await {
        assert!(invoked.unwrap().function_error().is_none());
    }
    assert_eq!(stack.functions.instances(SPILL_DRAINER), 1);
    stack.stop().await;
}
