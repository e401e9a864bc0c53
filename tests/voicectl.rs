//! `voicectl`, the real binary, against the emulator and the local stack: DLQ stats, peek
//! and selective redrive (one interrupted by SIGKILL), replays of files and of a call's
//! stored events, the call timeline, sign and verify (every conformance vector), simulate
//! and smoke, and the documented incident end to end; and that every AWS request the
//! commands send is one the template's `OperatorPolicy` grants.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use devstack::process::free_port;
use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};
use indicatif::ProgressBar;
use serde_json::Value;
use voicectl::connect::Stack;
use voicectl::dlq::{self, RedriveOptions};
use voicehooks::aws::RequestCounter;
use voicehooks::calls::worker::StatusWorker;
use voicehooks::calls::{CallStore, DynamoCallStore};
use voicehooks::config::local;
use voicehooks::events::{Envelope, EventKind};
use voicehooks::stack_names::{StackNames, WorkQueue};
use voicehooks::twilio::signature::compute_signature;
use voicehooks::twilio::{CallStatus, Params, StatusCallback};
use voicehooks::worker::QueuedMessage;
use voicehooks_tests::{FailOperation, aws, call_sid, status_event, status_params, template};

/// Runs `voicectl` with `env` (the emulator's) and returns its output.
async fn voicectl(env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = voicectl_command(env, args);
    tokio::task::spawn_blocking(move || command.output().expect("voicectl runs"))
        .await
        .unwrap()
}

fn voicectl_command(env: &[(String, String)], args: &[&str]) -> Command {
    let binary = Workspace::locate().function_binary("voicectl");
    assert!(
        binary.exists(),
        "{} missing: run `make test`",
        binary.display()
    );
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("VOICEHOOKS_STACK", local::STACK_NAME)
        .env_remove("VOICEHOOKS_ROUTES")
        .env_remove("VOICEHOOKS_PUBLIC_BASE_URL")
        .env_remove("TWILIO_AUTH_TOKEN")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "voicectl failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn text_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn envelope(sid: &str, status: CallStatus, seq: u32) -> Envelope {
    let params = status_params(sid, status, Some(seq));
    let callback = StatusCallback::parse(&params).unwrap();
    Envelope::call_status(&callback, &params, Some(&format!("{sid}-{seq}")))
}

/// Puts a message on a queue as the webhooks (and the workers' dead-lettering) do.
async fn put(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, attributes: &[(&str, &str)]) {
    let mut send = sqs.send_message().queue_url(url).message_body(body);
    for (name, value) in attributes {
        send = send.message_attributes(*name, voicehooks::queue::string_attribute(value));
    }
    send.send().await.unwrap();
}

/// Every body in a queue (each message once), leaving them all visible again.
async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut seen = HashMap::new();
    let mut handles = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            handles.push(m.receipt_handle.unwrap());
            seen.insert(m.message_id.unwrap(), m.body.unwrap());
        }
    }
    for handle in handles {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    let mut bodies: Vec<String> = seen.into_values().collect();
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_stats_peek_and_selective_redrive() {
    let aws = aws("voicectl-dlq").await;
    let env = aws.operator_env();
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let r = &aws.resources;
    let (a, b) = (call_sid(0xa), call_sid(0xb));
    for seq in 0..3 {
        let e = envelope(&a, CallStatus::Ringing, seq);
        put(
            &sqs,
            &r.status_dlq_url,
            &e.to_json(),
            &[("kind", "call.status"), ("call_sid", &a)],
        )
        .await;
    }
    for seq in 0..2 {
        let e = envelope(&b, CallStatus::Ringing, seq);
        put(
            &sqs,
            &r.status_dlq_url,
            &e.to_json(),
            &[("kind", "call.status"), ("call_sid", &b)],
        )
        .await;
    }
    let recording = Envelope::from_json(
        &std::fs::read_to_string(
            Workspace::locate()
                .events()
                .join("recording-worker/sqs-batch.json"),
        )
        .map(|t| {
            serde_json::from_str::<Value>(&t).unwrap()["Records"][0]["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .unwrap(),
    )
    .unwrap();
    put(
        &sqs,
        &r.recording.dlq_url,
        &recording.to_json(),
        &[
            ("kind", "recording.status"),
            ("call_sid", &recording.call_sid),
            (
                "failure_reason",
                "Twilio answered 401 to the media request: check the credentials",
            ),
            ("failed_by", "recording-worker"),
        ],
    )
    .await;
    let state_change = serde_json::from_str::<Value>(
        &std::fs::read_to_string(
            Workspace::locate()
                .events()
                .join("transcript-worker/sqs-batch.json"),
        )
        .unwrap(),
    )
    .unwrap()["Records"][1]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    put(&sqs, &r.transcript.dlq_url, &state_change, &[]).await;

    // stats: the depth of every DLQ, receiving nothing.
    let backlog = json_of(&voicectl(&env, &["--json", "dlq", "stats"]).await);
    let stats = &backlog["dead_letter_queues"];
    let depth: BTreeMap<&str, u64> = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["pipeline"].as_str().unwrap(),
                s["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        depth,
        BTreeMap::from([("recording", 1), ("status", 5), ("transcript", 1)])
    );

    // The spill beside them: nothing spilled here.
    assert_eq!(backlog["spill"]["events"], 0, "{backlog}");
    assert_eq!(
        backlog["spill"]["bucket"],
        format!("voicehooks-local-spill-{}", devstack::emulator::ACCOUNT_ID)
    );
    let human = text_of(&voicectl(&env, &["dlq", "stats"]).await);
    assert!(
        human.contains("voicehooks-local-status-dlq")
            && human.contains("waiting")
            && human.contains("spill: voicehooks-local-spill-"),
        "{human}"
    );

    // peek decodes, names the reason when the worker gave one, and leaves them in place.
    let peeked = json_of(&voicectl(&env, &["--json", "dlq", "peek", "--queue", "recording"]).await);
    let letter = &peeked[0];
    assert_eq!(letter["kind"], "recording.status");
    assert_eq!(letter["call_sid"], recording.call_sid.as_str());
    assert_eq!(
        letter["subject"],
        recording.params.get("RecordingSid").unwrap()
    );
    assert!(letter["failure_reason"].as_str().unwrap().contains("401"));
    assert_eq!(
        letter["receive_count"], 1,
        "stats received nothing: {letter}"
    );
    let saved = tempdir("voicectl-peek");
    let all = json_of(
        &voicectl(
            &env,
            &["--json", "dlq", "peek", "--save", saved.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(all.as_array().unwrap().len(), 7);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "transcribe.job")
    );
    assert_eq!(std::fs::read_dir(&saved).unwrap().count(), 7);
    assert_eq!(
        bodies(&sqs, &r.status_dlq_url).await.len(),
        5,
        "peek moved nothing"
    );

    // A dry run moves nothing; an age filter that matches nothing moves nothing.
    let dry = json_of(&voicectl(&env, &["--json", "dlq", "redrive", "--dry-run"]).await);
    assert_eq!(
        dry.as_array()
            .unwrap()
            .iter()
            .map(|r| r["moved"].as_u64().unwrap())
            .sum::<u64>(),
        7
    );
    let old = json_of(&voicectl(&env, &["--json", "dlq", "redrive", "--older-than", "1h"]).await);
    assert!(old.as_array().unwrap().iter().all(|r| r["moved"] == 0));
    assert_eq!(bodies(&sqs, &r.status_dlq_url).await.len(), 5);

    // By CallSid: only B's two move, to the status queue, bodies intact.
    let moved = json_of(
        &voicectl(
            &env,
            &[
                "--json", "dlq", "redrive", "--queue", "status", "--call", &b,
            ],
        )
        .await,
    );
    assert_eq!(
        (moved[0]["moved"].as_u64(), moved[0]["skipped"].as_u64()),
        (Some(2), Some(3))
    );
    let on_queue = bodies(&sqs, &r.status_queue_url).await;
    assert_eq!(on_queue.len(), 2);
    assert!(
        on_queue
            .iter()
            .all(|body| Envelope::from_json(body).unwrap().call_sid == b)
    );
    assert_eq!(bodies(&sqs, &r.status_dlq_url).await.len(), 3);

    // By kind: the Transcribe state change goes back to the transcript queue.
    let moved = json_of(
        &voicectl(
            &env,
            &["--json", "dlq", "redrive", "--kind", "transcribe.job"],
        )
        .await,
    );
    assert_eq!(
        moved
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["moved"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert_eq!(bodies(&sqs, &r.transcript.url).await, vec![state_change]);

    // Everything else; the DLQ's own attributes stay behind, the webhook's come along.
    let human = text_of(&voicectl(&env, &["dlq", "redrive"]).await);
    assert!(
        human.contains("moved 3") && human.contains("moved 1"),
        "{human}"
    );
    for url in [
        &r.status_dlq_url,
        &r.recording.dlq_url,
        &r.transcript.dlq_url,
    ] {
        assert!(bodies(&sqs, url).await.is_empty());
    }
    let back = sqs
        .receive_message()
        .queue_url(&r.recording.url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let attributes = back.messages()[0].message_attributes().unwrap();
    assert!(attributes.contains_key("kind") && attributes.contains_key("call_sid"));
    assert!(!attributes.contains_key("failure_reason"));
    let empty = text_of(&voicectl(&env, &["dlq", "peek", "--queue", "status"]).await);
    assert_eq!(empty.trim(), "voicehooks-local-status-dlq: empty");
}

/// What the status worker does with a batch of these bodies; none may fail.
async fn apply_all(store: DynamoCallStore, bodies: &[String]) {
    let ids: Vec<String> = (0..bodies.len()).map(|i| i.to_string()).collect();
    let messages: Vec<QueuedMessage<'_>> = bodies
        .iter()
        .zip(&ids)
        .map(|(body, id)| QueuedMessage {
            message_id: id,
            body,
            ..Default::default()
        })
        .collect();
    let failed = StatusWorker::new(store).apply_batch(&messages).await;
    assert!(failed.is_empty(), "{failed:?}");
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    output
        .attributes()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The environment `.local/stack.env` gives voicectl for `stack`.
fn stack_env(stack: &LocalStack) -> Vec<(String, String)> {
    stack
        .voicectl_env()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// One uninterrupted, unseen redrive of `queues`' DLQ.
async fn redrive(
    stack: &Stack,
    queues: &voicectl::connect::Queues,
    options: &RedriveOptions,
) -> dlq::RedriveReport {
    dlq::redrive(
        stack,
        queues,
        options,
        &ProgressBar::hidden(),
        &AtomicBool::new(false),
    )
    .await
    .unwrap()
}

/// A fresh folder (`log_dir` creates it).
fn tempdir(label: &str) -> PathBuf {
    Workspace::locate().log_dir(label).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redrive_killed_midway_loses_nothing_and_the_workers_absorb_the_copies() {
    let aws = aws("voicectl-kill").await;
    let env = aws.operator_env();
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let r = &aws.resources;
    let mut expected = Vec::new();
    for call in 0..12 {
        for (seq, status) in [
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Completed,
        ]
        .into_iter()
        .enumerate()
        .take(4)
        {
            let e = envelope(&call_sid(0x100 + call), status, seq as u32);
            put(&sqs, &r.status_dlq_url, &e.to_json(), &[]).await;
            expected.push(e.to_json());
        }
    }
    expected.sort();
    assert_eq!(expected.len(), 48);

    // 5 messages a second (about 10 s for all): killed after the first few.
    let mut child = voicectl_command(
        &env,
        &[
            "dlq", "redrive", "--queue", "status", "--rate", "5", "--hold", "3s",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    while depth(&sqs, &r.status_queue_url).await < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the redrive made no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What the killed process held comes back after --hold.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let on_queue = bodies(&sqs, &r.status_queue_url).await;
    let in_dlq = bodies(&sqs, &r.status_dlq_url).await;
    assert!(
        !in_dlq.is_empty() && on_queue.len() < 48,
        "it was stopped midway"
    );
    let mut union: Vec<String> = on_queue.iter().chain(&in_dlq).cloned().collect();
    union.sort();
    union.dedup();
    assert_eq!(
        union, expected,
        "every message is in one queue or the other"
    );
    println!(
        "killed midway: {} on the queue, {} still in the DLQ, {} in both",
        on_queue.len(),
        in_dlq.len(),
        on_queue.len() + in_dlq.len() - 48
    );

    // Run again: the DLQ empties, every message is on the queue at least once.
    let report = json_of(&voicectl(&env, &["--json", "dlq", "redrive", "--queue", "status"]).await);
    assert_eq!(report[0]["failed"], 0);
    assert!(bodies(&sqs, &r.status_dlq_url).await.is_empty());
    let mut all = bodies(&sqs, &r.status_queue_url).await;
    let total = all.len();
    all.dedup();
    assert_eq!(all, expected);

    // The status worker's own batch code absorbs any copy: each event once per call.
    let store = DynamoCallStore::new(aws_sdk_dynamodb::Client::new(&aws.sdk), &r.calls_table);
    let every: Vec<String> = bodies(&sqs, &r.status_queue_url).await;
    assert_eq!(every.len(), total);
    apply_all(store.clone(), &every).await;
    for call in 0..12 {
        let record = store
            .get_call(&call_sid(0x100 + call))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status.as_deref(), Some("completed"));
        assert_eq!(record.timeline.len(), 4, "each event once");
    }
}

/// Ctrl-C finishes the batch in hand, then says what moved and what is left: nothing is in
/// both queues, and the rest is still in the DLQ.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_redrive_cleanly_with_what_moved_and_what_is_left() {
    let aws = aws("voicectl-ctrl-c").await;
    let env = aws.operator_env();
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let r = &aws.resources;
    for call in 0..30 {
        let e = envelope(&call_sid(0x200 + call), CallStatus::Ringing, 1);
        put(&sqs, &r.status_dlq_url, &e.to_json(), &[]).await;
    }
    let child = voicectl_command(
        &env,
        &["dlq", "redrive", "--queue", "status", "--rate", "5"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let started = Instant::now();
    while depth(&sqs, &r.status_queue_url).await < 5 {
        assert!(started.elapsed() < Duration::from_secs(20), "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let on_queue = bodies(&sqs, &r.status_queue_url).await.len();
    let in_dlq = bodies(&sqs, &r.status_dlq_url).await.len();
    assert_eq!(on_queue + in_dlq, 30, "no copy in both: {text}");
    assert!(in_dlq > 0, "stopped midway");
    assert!(
        text.contains(&format!("moved {on_queue};"))
            && text.contains(&format!("{in_dlq} in the DLQ now"))
            && text.contains("interrupted"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redrive_whose_deletes_fail_leaves_copies_that_the_worker_absorbs() {
    let aws = aws("voicectl-copies").await;
    let r = &aws.resources;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    for seq in 0..4 {
        for call in 0..3 {
            let e = envelope(&call_sid(0x200 + call), CallStatus::Ringing, seq);
            put(&sqs, &r.status_dlq_url, &e.to_json(), &[]).await;
        }
    }
    let stack = |sqs: aws_sdk_sqs::Client| Stack {
        sqs,
        ..Stack::with_config(local::STACK_NAME, &aws.sdk)
    };
    let failing = stack(aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&aws.sdk)
            .interceptor(FailOperation::always("DeleteMessageBatch"))
            .build(),
    ));
    let queues = failing.queues(WorkQueue::Status).await.unwrap();
    let options = RedriveOptions {
        hold: Duration::from_secs(30),
        ..RedriveOptions::default()
    };
    let report = redrive(&failing, &queues, &options).await;
    assert_eq!((report.moved, report.copied, report.failed), (0, 12, 0));
    assert_eq!(bodies(&sqs, &r.status_queue_url).await.len(), 12, "sent");
    assert_eq!(
        bodies(&sqs, &r.status_dlq_url).await.len(),
        12,
        "and still in the DLQ"
    );

    let healthy = stack(sqs.clone());
    let report = redrive(&healthy, &queues, &options).await;
    assert_eq!((report.moved, report.copied), (12, 0));
    assert!(bodies(&sqs, &r.status_dlq_url).await.is_empty());
    let every = bodies(&sqs, &r.status_queue_url).await;
    assert_eq!(every.len(), 24, "each message twice");
    let store = DynamoCallStore::new(aws_sdk_dynamodb::Client::new(&aws.sdk), &r.calls_table);
    apply_all(store.clone(), &every).await;
    let mut absorbed = 0;
    for call in 0..3 {
        let record = store
            .get_call(&call_sid(0x200 + call))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.timeline.len(), 4, "each event once");
        absorbed += record.duplicates;
    }
    assert_eq!(absorbed, 12, "every copy absorbed");
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_a_calls_stored_events_rebuilds_the_state_a_first_run_left() {
    let aws = aws("voicectl-replay").await;
    let env = aws.operator_env();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws.sdk);
    let table = &aws.resources.calls_table;
    let store = DynamoCallStore::new(dynamodb.clone(), table);
    let sid = call_sid(0xca11);
    // A first run: started, then statuses out of order with a duplicate and a late one.
    let started = Envelope::call_started(
        &sid,
        local::ACCOUNT_SID,
        &status_params(&sid, CallStatus::Ringing, None),
        "sales",
    );
    store
        .apply(&voicehooks::calls::CallEvent::from_envelope(&started).unwrap())
        .await
        .unwrap();
    for (status, seq) in [
        (CallStatus::Ringing, 1),
        (CallStatus::Initiated, 0),
        (CallStatus::InProgress, 2),
        (CallStatus::InProgress, 2),
        (CallStatus::Completed, 3),
    ] {
        store
            .apply_status(&status_event(&sid, status, Some(seq)))
            .await
            .unwrap();
    }
    let first_run = store.get_call(&sid).await.unwrap().unwrap();
    assert_eq!((first_run.late_events(), first_run.duplicates), (1, 1));

    // A buggy worker scribbled on the state.
    let key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("CALL#{sid}"))),
        ("sk".to_owned(), AttributeValue::S("STATE".into())),
    ]);
    dynamodb
        .update_item()
        .table_name(table)
        .set_key(Some(key.clone()))
        .update_expression("SET #s = :s, flow = :f REMOVE seq")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S("ringing".into()))
        .expression_attribute_values(":f", AttributeValue::S("wrong".into()))
        .send()
        .await
        .unwrap();
    assert_ne!(store.get_call(&sid).await.unwrap().unwrap(), first_run);

    let replayed = json_of(&voicectl(&env, &["--json", "replay", "calls", &sid]).await);
    assert_eq!(
        replayed[0]["replayed"]["events"], 5,
        "the start and four distinct statuses"
    );
    assert_eq!(replayed[0]["replayed"]["late"], 1);
    assert_eq!(
        store.get_call(&sid).await.unwrap().unwrap(),
        first_run,
        "exactly as the first run left it"
    );

    // Cut short after the state was set aside and one event re-applied: a second run
    // finishes from the set-aside state, not from the half-built one.
    let item = dynamodb
        .get_item()
        .table_name(table)
        .set_key(Some(key.clone()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut backup = item.clone();
    backup.insert("sk".into(), AttributeValue::S("STATE#REPLAY-BACKUP".into()));
    dynamodb
        .put_item()
        .table_name(table)
        .set_item(Some(backup))
        .send()
        .await
        .unwrap();
    dynamodb
        .delete_item()
        .table_name(table)
        .set_key(Some(key))
        .send()
        .await
        .unwrap();
    store
        .apply_status(&status_event(&sid, CallStatus::Ringing, Some(1)))
        .await
        .unwrap();
    let text = text_of(&voicectl(&env, &["replay", "calls", &sid]).await);
    assert!(text.contains("finished an interrupted replay"), "{text}");
    assert_eq!(store.get_call(&sid).await.unwrap().unwrap(), first_run);
    assert_eq!(
        voicehooks_tests::item_count(&aws.sdk, table).await,
        1,
        "no backup left behind"
    );

    // A window finds the call; a dry run changes nothing.
    let listed = json_of(
        &voicectl(
            &env,
            &[
                "--json",
                "replay",
                "calls",
                "--since",
                "2000-01-01T00:00:00Z",
                "--until",
                "2999-01-01T00:00:00Z",
                "--dry-run",
            ],
        )
        .await,
    );
    assert_eq!(listed, serde_json::json!([sid]));
    let missing = voicectl(&env, &["replay", "calls", &call_sid(0xdead)]).await;
    assert!(!missing.status.success() && text_of(&missing).contains("no such call"));

    // A redrive puts events back in the DLQ's order, not Twilio's: the worker keeps the
    // state right and records the ones behind a later one as late. A replay applies them in
    // the order the webhook accepted them, which is what a first-time run does.
    let (redriven, in_order) = (call_sid(0xca12), call_sid(0xca13));
    let statuses = [
        (CallStatus::Initiated, 1),
        (CallStatus::Ringing, 2),
        (CallStatus::InProgress, 3),
        (CallStatus::Completed, 4),
    ];
    let accepted = |sid: &str| -> Vec<String> {
        statuses
            .iter()
            .map(|(status, seq)| {
                std::thread::sleep(Duration::from_millis(2)); // distinct received_at
                envelope(sid, *status, *seq).to_json()
            })
            .collect()
    };
    let (scrambled, ordered) = (accepted(&redriven), accepted(&in_order));
    apply_all(
        store.clone(),
        &[2, 0, 1, 3].map(|i: usize| scrambled[i].clone()),
    )
    .await;
    apply_all(store.clone(), &ordered).await;
    let before = store.get_call(&redriven).await.unwrap().unwrap();
    assert_eq!(
        before.late_events(),
        2,
        "initiated and ringing came after in-progress"
    );
    let replayed = json_of(&voicectl(&env, &["--json", "replay", "calls", &redriven]).await);
    assert_eq!(replayed[0]["replayed"]["applied"], 4);
    let after = store.get_call(&redriven).await.unwrap().unwrap();
    let first_time = store.get_call(&in_order).await.unwrap().unwrap();
    let shape = |r: &voicehooks::calls::CallRecord| {
        let steps: Vec<(String, bool)> = r
            .timeline
            .iter()
            .map(|e| (e.status.clone(), e.applied))
            .collect();
        (
            r.status.clone(),
            r.sequence_number,
            r.late_events(),
            r.duplicates,
            steps,
        )
    };
    assert_eq!(
        shape(&after),
        shape(&first_time),
        "as a first-time run leaves it"
    );
    assert_eq!(after.late_events(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_files_onto_queues() {
    let aws = aws("voicectl-files").await;
    let env = aws.operator_env();
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let events = Workspace::locate().events();
    let sent = json_of(
        &voicectl(
            &env,
            &[
                "--json",
                "replay",
                "files",
                "--queue",
                events.join("webhook-status").to_str().unwrap(),
                events.join("transcript-worker").to_str().unwrap(),
            ],
        )
        .await,
    );
    let sent = sent.as_array().unwrap();
    let outcome = |o: &str| sent.iter().filter(|s| s["outcome"] == o).count();
    // Fifteen requests (eleven call statuses, one of them a GET, not Twilio's; four room
    // events); a batch of a Twilio transcription and a Transcribe state change.
    assert_eq!((outcome("sent"), outcome("skipped")), (16, 1), "{sent:#?}");
    let on_status = bodies(&sqs, &aws.resources.status_queue_url).await;
    assert_eq!(on_status.len(), 14);
    let rooms = on_status
        .iter()
        .filter(|b| Envelope::from_json(b).unwrap().kind == EventKind::ConferenceStatus)
        .count();
    assert_eq!(rooms, 4, "the room events go on the status queue");
    let ringing = on_status
        .iter()
        .map(|b| Envelope::from_json(b).unwrap())
        .find(|e| e.delivery_token.as_deref() == Some("sample-ringing"))
        .expect("Twilio's idempotency token rides along");
    assert!(ringing.idempotency_key.ends_with(":call.status:ringing:1"));
    assert_eq!(ringing.params.get("CallStatus"), Some("ringing"));
    assert_eq!(bodies(&sqs, &aws.resources.transcript.url).await.len(), 2);

    // Envelopes saved by `dlq peek --save` go back as they were.
    let dir = tempdir("voicectl-saved");
    std::fs::write(dir.join("status-1.json"), &on_status[0]).unwrap();
    std::fs::write(dir.join("junk.json"), "{\"not\": \"an envelope\"}").unwrap();
    let sent = json_of(
        &voicectl(
            &env,
            &[
                "--json",
                "replay",
                "files",
                "--queue",
                dir.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert_eq!(sent[1]["outcome"], "sent");
    assert_eq!(sent[0]["outcome"], "skipped");
    assert_eq!(
        bodies(&sqs, &aws.resources.status_queue_url).await.len(),
        on_status.len() + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_batch_agrees_with_every_conformance_vector() {
    // The HMAC-SHA1 cases and the SharedKey ones (with their settings header).
    let cases: Vec<Value> = ["signature_vectors.json", "sharedkey_vectors.json"]
        .iter()
        .flat_map(|file| {
            let vectors: Value = serde_json::from_str(
                &std::fs::read_to_string(
                    Workspace::locate()
                        .root
                        .join("shared/tests/conformance")
                        .join(file),
                )
                .unwrap(),
            )
            .unwrap();
            vectors["cases"].as_array().unwrap().clone()
        })
        .collect();
    assert!(cases.len() >= 66 + 45);
    let lines: String = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "url": c["url"], "params": c["params"], "body": c["body"],
                "auth_token": c["auth_token"], "signature": c["signature_header"],
                "signature_settings": c["signature_settings"],
            })
            .to_string()
                + "\n"
        })
        .collect();
    let mut child = voicectl_command(&[], &["verify", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let verdicts: Vec<Value> = text_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "one line per case, in order");
    let disagreements: Vec<&str> = cases
        .iter()
        .zip(&verdicts)
        .filter(|(case, verdict)| case["expected_valid"] != verdict["valid"])
        .map(|(case, _)| case["id"].as_str().unwrap())
        .collect();
    assert!(disagreements.is_empty(), "{disagreements:?}");
    println!("verify --batch: {} cases agree", verdicts.len());

    // sign computes Twilio's documented example; verify explains a proxy's http:// URL.
    let doc = &cases[0];
    let mut args = vec![
        "sign".to_owned(),
        "--url".into(),
        doc["url"].as_str().unwrap().into(),
    ];
    for pair in doc["params"].as_array().unwrap() {
        args.extend([
            "-p".into(),
            format!(
                "{}={}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
        ]);
    }
    let token = [(
        "TWILIO_AUTH_TOKEN".to_owned(),
        doc["auth_token"].as_str().unwrap().to_owned(),
    )];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signed = voicectl(&token, &args).await;
    assert_eq!(
        text_of(&signed).trim(),
        doc["signature_header"].as_str().unwrap()
    );
    let public = "https://hooks.example.com/twilio/status";
    let params = Params::new(vec![("CallSid".into(), "CA1".into())]);
    let signature = compute_signature("12345", public, params.iter());
    let token = [("TWILIO_AUTH_TOKEN".to_owned(), "12345".to_owned())];
    let explained = voicectl(
        &token,
        &[
            "verify",
            "--url",
            "http://hooks.example.com/twilio/status",
            "--signature",
            &signature,
            "--form",
            "CallSid=CA1",
        ],
    )
    .await;
    assert!(!explained.status.success());
    let text = text_of(&explained);
    assert!(
        text.starts_with("INVALID") && text.contains(&format!("matches {public}")),
        "{text}"
    );
    assert!(!text.contains("12345"), "the token is never shown");

    // A SharedKey signature: signed and verified with the settings header's algorithm.
    let settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256";
    let request = ["--url", public, "-p", "CallSid=CA1"];
    let signed = voicectl(
        &token,
        &[&["sign"], &request[..], &["--signature-settings", settings]].concat(),
    )
    .await;
    let sharedkey = text_of(&signed).trim().to_owned();
    assert_eq!(sharedkey.len(), 44, "HMAC-SHA256 in base64: {sharedkey}");
    let verify = [&["verify"], &request[..], &["--signature", &sharedkey]].concat();
    let valid = voicectl(
        &token,
        &[&verify[..], &["--signature-settings", settings]].concat(),
    )
    .await;
    assert!(valid.status.success(), "{}", text_of(&valid));
    let without = voicectl(&token, &verify).await;
    assert!(
        !without.status.success(),
        "HMAC-SHA1 is not what was signed"
    );
}

/// The documented incident (docs/OPERATIONS.md), on the local stack: a worker fault sends a call's events to the
/// DLQ; the fault is fixed; `dlq redrive` moves them back; `voicectl call` shows the call
/// whole. Then `smoke`, and `simulate` serving its recordings.
#[tokio::test(flavor = "multi_thread")]
async fn incident_redrive_timeline_smoke_and_simulate_on_the_local_stack() {
    let media_port = free_port().unwrap();
    let stack = LocalStack::start(StackOptions {
        label: "voicectl-incident".into(),
        media_host: Some(format!("127.0.0.1:{media_port}")),
        ..Default::default()
    })
    .await
    .expect("the local stack starts (run `make test`, which builds the functions first)");
    let env = stack_env(&stack);
    let sdk = &stack.sdk;
    let table = &stack.resources.calls_table;

    // The fault: the worker cannot write (the table is gone). The webhooks still accept.
    devstack::deploy::break_table(sdk, table).await.unwrap();
    let events = Workspace::locate().events().join("webhook-status");
    let replay_files = |names: &[&str]| -> Vec<String> {
        let files = names.iter().map(|f| {
            events
                .join(format!("{f}.json"))
                .to_string_lossy()
                .into_owned()
        });
        ["--json", "replay", "files"]
            .map(str::to_owned)
            .into_iter()
            .chain(files)
            .collect()
    };
    let args = replay_files(&["initiated", "ringing", "in-progress", "completed"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sent = json_of(&voicectl(&env, &args).await);
    assert!(
        sent.as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "sent"),
        "{sent:#?}"
    );
    let started = Instant::now();
    loop {
        let stats = json_of(&voicectl(&env, &["--json", "dlq", "stats"]).await);
        if stats["dead_letter_queues"][0]["messages"] == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never dead-lettered: {stats}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The worker dead-lettered each on the queue's last receive, saying why.
    let peeked = json_of(&voicectl(&env, &["--json", "dlq", "peek", "--queue", "status"]).await);
    for letter in peeked.as_array().unwrap() {
        let why = letter["failure_reason"].as_str().unwrap_or_default();
        assert!(
            why.starts_with("gave up after 5 receives: ") && why.contains("ResourceNotFound"),
            "{letter:#}"
        );
        assert_eq!(letter["failed_by"], "status-worker");
    }
    let text = text_of(&voicectl(&env, &["dlq", "peek", "--queue", "status"]).await);
    assert!(text.contains("why: gave up after 5 receives"), "{text}");

    // The fix, the redrive, the timeline.
    devstack::deploy::restore_table(sdk, voicehooks::config::local::STACK_NAME, table)
        .await
        .unwrap();
    let moved = json_of(&voicectl(&env, &["--json", "dlq", "redrive", "--queue", "status"]).await);
    assert_eq!(moved[0]["moved"], 4);
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();
    let sid = "CAe1a2b3c4d5e6f708192a3b4c5d6e7f80";
    let view = json_of(&voicectl(&env, &["--json", "call", sid]).await);
    assert_eq!(view["call"]["status"], "completed");
    let timeline: Vec<&str> = view["call"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(timeline.len(), 4, "{timeline:?}");
    let table_text = text_of(&voicectl(&env, &["call", sid]).await);
    assert!(
        table_text.contains("status completed") && table_text.contains("in-progress"),
        "{table_text}"
    );
    // The redrive's order is SQS's; replaying the call puts the timeline in the webhook's.
    let replayed = json_of(&voicectl(&env, &["--json", "replay", "calls", sid]).await);
    assert_eq!(replayed[0]["replayed"]["applied"], 4, "{replayed}");
    let view = json_of(&voicectl(&env, &["--json", "call", sid]).await);
    let timeline: Vec<(&str, bool)> = view["call"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_str().unwrap(), e["applied"] == true))
        .collect();
    assert_eq!(
        timeline,
        [
            ("initiated", true),
            ("ringing", true),
            ("in-progress", true),
            ("completed", true)
        ]
    );

    // Replaying the same files to the webhook again changes nothing: same tokens.
    let again = json_of(&voicectl(&env, &args).await);
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "sent")
    );
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();
    let view = json_of(&voicectl(&env, &["--json", "call", sid]).await);
    assert_eq!(view["call"]["timeline"].as_array().unwrap().len(), 4);
    assert!(view["call"]["duplicates"].as_u64().unwrap() >= 4);

    // A standup room's callbacks, latest first: `voicectl call` shows the room the call
    // was in, and how it left.
    let room_args = replay_files(&[
        "room-conference-end",
        "room-participant-leave",
        "room-conference-start",
        "room-participant-join",
    ]);
    let room_args: Vec<&str> = room_args.iter().map(String::as_str).collect();
    let sent = json_of(&voicectl(&env, &room_args).await);
    assert!(
        sent.as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "sent"),
        "{sent:#?}"
    );
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();
    let caller = "CAf0e1d2c3b4a5968778695a4b3c2d1e0f";
    let view = json_of(&voicectl(&env, &["--json", "call", caller]).await);
    let room = &view["rooms"][0];
    assert_eq!(room["friendly_name"], "daily-standup", "{view:#}");
    assert_eq!(room["status"], "completed");
    assert_eq!(room["participants"][0]["call_sid"], caller);
    assert_eq!(
        room["participants"][0]["left_reason"],
        "participant_hung_up"
    );
    let text = text_of(&voicectl(&env, &["call", caller]).await);
    assert!(
        text.contains("daily-standup") && text.contains("last-participant-left"),
        "{text}"
    );

    // smoke: one synthetic call lands whole.
    let smoke = json_of(&voicectl(&env, &["--json", "smoke"]).await);
    assert_eq!(smoke["final_status"], "completed");
    assert_eq!(smoke["events_stored"], 4);
    assert!(smoke["flow"].is_string() && smoke["problems"].as_array().unwrap().is_empty());

    // simulate: calls with delays, recordings served until fetched.
    let report = json_of(
        &voicectl(
            &env,
            &[
                "--json",
                "simulate",
                "--calls",
                "8",
                "--seed",
                "5",
                "--rate",
                "20",
                "--delays",
                "0.3",
                "--max-delay",
                "200ms",
                "--serve-media",
                "--media-port",
                &media_port.to_string(),
                "--linger",
                "60s",
            ],
        )
        .await,
    );
    assert!(
        report["gave_up"].as_array().unwrap().is_empty(),
        "{}",
        report["gave_up"]
    );
    assert!(report["delayed"].as_u64().unwrap() > 0);
    stack
        .wait_until_drained(Duration::from_secs(120))
        .await
        .unwrap();
    let recorded: Vec<String> = report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["conversation"]["requested"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["params"].to_string().contains("RecordingSid"))
        })
        .map(|c| c["script"]["call_sid"].as_str().unwrap().to_owned())
        .collect();
    assert!(!recorded.is_empty(), "some simulated calls recorded");
    for sid in &recorded {
        let view = json_of(&voicectl(&env, &["--json", "call", sid]).await);
        let recordings = view["recordings"].as_array().unwrap();
        assert!(!recordings.is_empty(), "{sid}: {view}");
        assert!(
            recordings
                .iter()
                .all(|r| r["state"] == "archived" && r["sha256"].is_string()),
            "{view}"
        );
    }
}

/// A poison message on the local stack: the recording worker dead-letters the sample's refused
/// URL at once, every time. A redrive leaves it (the worker said no retry can help) unless
/// forced, and forced moves it exactly once, then ends, though the worker puts it straight
/// back into the DLQ while the redrive still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_dead_lettered_again_at_once_moves_exactly_once() {
    let stack = LocalStack::start(StackOptions {
        label: "voicectl-poison".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts");
    let env = stack_env(&stack);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queues = &stack.resources.recording;
    let batch: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Workspace::locate()
                .events()
                .join("recording-worker/sqs-batch.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let refused = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["messageId"] == "rec-refused-url")
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    put(&sqs, &queues.url, &refused, &[("kind", "recording.status")]).await;
    let dead_lettered = || async {
        let started = Instant::now();
        while depth(&sqs, &queues.dlq_url).await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    dead_lettered().await;
    let peeked = json_of(&voicectl(&env, &["--json", "dlq", "peek", "--queue", "recording"]).await);
    assert_eq!(peeked[0]["failure_kind"], "permanent", "{peeked}");
    // The call's view says so too, in 100 columns.
    let call = peeked[0]["call_sid"].as_str().unwrap();
    let view = json_of(&voicectl(&env, &["--json", "call", call]).await);
    assert_eq!(view["recordings"][0]["condition"], "refused", "{view}");
    let detail = view["recordings"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("No request was sent"), "{detail}");
    let text = text_of(&voicectl(&env, &["call", call]).await);
    assert!(
        text.contains("refused to fetch http://169.254.169."),
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");

    // Without --force it stays, and the dry run says why.
    let redrive = ["dlq", "redrive", "--queue", "recording"];
    let dry = text_of(&voicectl(&env, &[&redrive[..], &["--dry-run"]].concat()).await);
    assert!(
        dry.contains("would move 0") && dry.contains("1 permanent: no retry can help; --force"),
        "{dry}"
    );
    let kept = json_of(&voicectl(&env, &[&["--json"], &redrive[..]].concat()).await);
    assert_eq!(
        (&kept[0]["moved"], &kept[0]["permanent"]),
        (&0.into(), &1.into())
    );

    // Forced: one move. The worker re-dead-letters it at once; the run ends all the same.
    let forced = voicectl(&env, &[&["--json"], &redrive[..], &["--force"]].concat()).await;
    let forced = json_of(&forced);
    assert_eq!(forced[0]["moved"], 1, "{forced}");
    dead_lettered().await;
    assert_eq!(
        depth(&sqs, &queues.dlq_url).await,
        1,
        "one copy, back in the DLQ"
    );
    assert_eq!(depth(&sqs, &queues.url).await, 0);
    // Run again while the copy is there: it is a new message, and (being permanent) stays.
    let again = json_of(&voicectl(&env, &[&["--json"], &redrive[..]].concat()).await);
    assert_eq!(
        (&again[0]["moved"], &again[0]["left"]),
        (&0.into(), &1.into())
    );
    stack.stop().await;
}

/// A 403 for a stack behind a custom domain that was deployed without `PublicBaseUrl`: the
/// webhook's log line names the URL it checked, the call and account, and the tokens tried
/// (never the signature or a token); `verify`, given the URL from Twilio's debugger, says the
/// signature is Twilio's and the stack checks another URL.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_domain_403_is_diagnosed_from_the_log_and_verify() {
    let stack = LocalStack::start(StackOptions {
        label: "voicectl-403".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts");
    let env = stack_env(&stack);
    let custom = "https://voice.example.com/twilio/status";
    let sid = call_sid(0x403);
    let params = status_params(&sid, CallStatus::Ringing, Some(1));
    let signature = compute_signature(local::AUTH_TOKEN, custom, params.iter());
    let response = voicehooks_tests::post_form(
        &stack.status_webhook_target(),
        custom,
        &params,
        Some(local::AUTH_TOKEN),
    )
    .await;
    assert_eq!(response.status(), 403);

    let checked = stack.status_webhook_public();
    let started = Instant::now();
    let line = loop {
        // Whichever instance took the request.
        let log = voicehooks_tests::instance_logs(&stack.log_dir, "webhook-status");
        if let Some(line) = log.lines().find(|l| l.contains("webhook rejected")) {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rejection logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let logged: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(logged["url"], checked.as_str(), "{line}");
    assert_eq!(logged["call_sid"], sid.as_str());
    assert_eq!(logged["account_sid"], local::ACCOUNT_SID);
    // The secret's previous version (the placeholder the template generated, AWSPREVIOUS since
    // the local credentials were put) is tried too, as after any rotation.
    assert_eq!(logged["tokens_tried"], "current, previous", "{line}");
    assert!(
        !line.contains(&signature) && !line.contains(local::AUTH_TOKEN),
        "never the signature or the token: {line}"
    );

    // verify with the URL Twilio's debugger shows: the mismatch, and the fix.
    let form = params.to_form();
    let verify = [
        "verify",
        "--signature",
        &signature,
        "--form",
        &form,
        "--url",
    ];
    let diagnosed = voicectl(&env, &[&verify[..], &[custom]].concat()).await;
    let text = text_of(&diagnosed);
    assert!(!diagnosed.status.success(), "{text}");
    assert!(
        text.contains(&format!("URL MISMATCH: Twilio signed for {custom}"))
            && text.contains(&format!("the stack checks {checked} (its base URL"))
            && text.contains("the signature is valid for the URL Twilio called")
            && text.contains("PublicBaseUrl=https://voice.example.com ")
            && text.contains("VALID with token AWSCURRENT"),
        "{text}"
    );
    // With the URL from our own log, it points at Twilio's debugger, not at the token.
    let from_log = text_of(&voicectl(&env, &[&verify[..], &[checked.as_str()]].concat()).await);
    assert!(
        from_log.starts_with("INVALID") && from_log.contains("Twilio's debugger (error 11200"),
        "{from_log}"
    );
    stack.stop().await;
}

/// The IAM action an SDK request (`Service.Operation`, as [`RequestCounter`] names it) needs:
/// SQS's batch calls are authorised as their single forms.
fn iam_action(operation: &str) -> String {
    let (service, name) = operation.split_once('.').unwrap();
    let name = match (service, name) {
        ("SQS", _) => name.strip_suffix("Batch").unwrap_or(name),
        // S3's listing is authorised as listing the bucket.
        ("S3", "ListObjectsV2") => "ListBucket",
        _ => name,
    };
    format!("{}:{name}", service.replace(' ', "").to_lowercase())
}

/// The actions the template's `OperatorPolicy` grants (on which resources is
/// `tests/infra_agreement.rs`'s review).
fn operator_actions() -> Vec<String> {
    let t = template::template();
    template::statements(&t, "OperatorPolicy")
        .into_iter()
        .flat_map(template::actions)
        .map(str::to_owned)
        .collect()
}

/// On-call attaches the stack's `OperatorPolicy` and nothing else, so every request any
/// command sends must be one it grants: run each command's AWS side with the requests
/// counted, and look each one up in the policy.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_voicectl_sends_is_granted_by_the_operator_policy() {
    let aws = aws("voicectl-iam").await;
    let r = &aws.resources;
    let counter = RequestCounter::default();
    let stack = Stack {
        names: StackNames::new(local::STACK_NAME),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&aws.sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        secrets: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&aws.sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&aws.sdk)
                .force_path_style(true)
                .interceptor(counter.clone())
                .build(),
        ),
        sts: aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&aws.sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        lambda: aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(&aws.sdk)
                .interceptor(counter.clone())
                .build(),
        ),
    };
    // Something in every DLQ, and a call with stored events.
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let sid = call_sid(0x1a3);
    let body = envelope(&sid, CallStatus::Completed, 3).to_json();
    for dlq in [
        &r.status_dlq_url,
        &r.recording.dlq_url,
        &r.transcript.dlq_url,
    ] {
        put(&sqs, dlq, &body, &[]).await;
    }
    let store = DynamoCallStore::new(aws_sdk_dynamodb::Client::new(&aws.sdk), &r.calls_table);
    apply_all(
        store.clone(),
        &[envelope(&sid, CallStatus::Ringing, 1).to_json()],
    )
    .await;

    let hidden = ProgressBar::hidden();
    let all = RedriveOptions {
        hold: Duration::from_secs(30),
        ..RedriveOptions::default()
    };
    for pipeline in WorkQueue::ALL {
        let queues = stack.queues(pipeline).await.unwrap();
        dlq::stats(&stack, &queues).await.unwrap();
        dlq::peek(&stack, &queues, 10).await.unwrap();
        let report = redrive(&stack, &queues, &all).await;
        assert_eq!(report.moved, 1, "{pipeline}");
    }
    let files =
        voicectl::replay::load(&[Workspace::locate().events().join("webhook-status")]).unwrap();
    voicectl::replay::to_queues(&stack, &files, &hidden)
        .await
        .unwrap();
    let replayed = voicectl::replay::calls(&stack, std::slice::from_ref(&sid), &hidden).await;
    assert!(replayed[0].error.is_none(), "{:?}", replayed[0].error);
    let window = stack
        .calls()
        .calls_between("2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(window, std::slice::from_ref(&sid));
    let view = voicectl::timeline::load(&stack, &sid).await.unwrap();
    assert!(view.call.is_some());
    dlq::spill_stats(&stack).await.unwrap(); // stats, beside the DLQs
    stack.credentials().await.unwrap(); // verify (current and previous)
    stack.public_base_url().await; // verify: what the deployed webhook checks
    stack.signing_token(None).await.unwrap(); // sign, replay --url, smoke
    // reconcile: a call Twilio ended that the table has not, and a recording never archived.
    let twilio = voicectl::media_server::MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN)
        .await
        .unwrap();
    let ended = call_sid(0x1a);
    twilio.provisioned().add_call(
        local::ACCOUNT_SID,
        &voicectl::twilio_api::CallResource {
            sid: ended.clone(),
            parent_call_sid: None,
            status: "busy".into(),
            from: "+14155550100".into(),
            to: "+16285550123".into(),
            direction: "inbound".into(),
            duration: 0,
        },
    );
    twilio.provisioned().add_recording(
        local::ACCOUNT_SID,
        &ended,
        "RE0000000000000000000000000000001a",
        (3, 1),
        &twilio.recording_url("RE0000000000000000000000000000001a"),
    );
    let rest = voicehooks::twilio::rest::RestClient::for_account(
        reqwest::Client::new(),
        &twilio.api_base(),
        &voicehooks::secrets::TwilioCredentials::new(local::ACCOUNT_SID, local::AUTH_TOKEN),
    );
    let work = |pipeline| {
        let stack = &stack;
        async move {
            let url = stack.queues(pipeline).await.unwrap().queue_url;
            voicehooks::queue::SqsEventQueue::new(stack.sqs.clone(), url)
        }
    };
    let (status_queue, recording_queue) = (
        work(WorkQueue::Status).await,
        work(WorkQueue::Recording).await,
    );
    let repaired = voicehooks::reconcile::Reconciler {
        twilio: &rest,
        calls: &stack.calls(),
        recordings: &stack.recordings(),
        status_queue: &status_queue,
        recording_queue: &recording_queue,
    }
    .run(time::OffsetDateTime::now_utc() - Duration::from_secs(3600))
    .await
    .unwrap();
    assert_eq!(repaired.statuses_repaired.len(), 1, "{repaired:?}");
    assert_eq!(repaired.recordings_queued.len(), 1, "{repaired:?}");

    // Exactly: nothing voicectl sends is missing from the policy (AccessDenied at 3 a.m.),
    // and the policy grants nothing voicectl never sends. KMS is what SSE-KMS queues, table
    // and secret need under these calls; SQS's batch calls are authorised as single ones.
    // sts:GetCallerIdentity needs no permission ("No permissions are required to perform
    // this operation", the STS API reference), so no policy lists it.
    let sent: std::collections::BTreeSet<String> = counter
        .snapshot()
        .keys()
        .map(|op| iam_action(op))
        .filter(|action| action != "sts:GetCallerIdentity")
        .collect();
    let granted: std::collections::BTreeSet<String> = operator_actions()
        .into_iter()
        .filter(|a| !a.starts_with("kms:"))
        .collect();
    assert_eq!(
        sent, granted,
        "requests sent vs the OperatorPolicy's grants"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_are_checked_and_applied_through_twilios_rest_api() {
    let stack = LocalStack::start(StackOptions {
        label: "voicectl-numbers".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts");
    let env = stack_env(&stack);
    let code = |output: &Output| output.status.code();

    // The stand-in account starts drifted: check says so, and exits 2.
    let check = voicectl(&env, &["numbers", "check"]).await;
    assert_eq!(code(&check), Some(2), "{}", text_of(&check));
    let text = text_of(&check);
    assert!(text.contains("4 of 5 drifted"), "{text}");
    assert!(text.contains("GET instead of POST"), "{text}");
    assert!(text.contains("no connection overrides"), "{text}");
    let report: Value =
        serde_json::from_slice(&voicectl(&env, &["--json", "numbers", "check"]).await.stdout)
            .unwrap();
    let drifted = |report: &Value| -> Vec<String> {
        report["wired"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| !w["drift"].as_array().unwrap().is_empty())
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        drifted(&report),
        ["+14155550101", "+14155550102", "+14155550103", "softphone"]
    );

    // A dry run shows the diff, changes nothing, and exits 2 for a script.
    let dry = voicectl(&env, &["numbers", "apply", "--dry-run"]).await;
    assert_eq!(code(&dry), Some(2));
    assert!(
        text_of(&dry).contains(r#""GET" → "POST""#),
        "{}",
        text_of(&dry)
    );
    assert_eq!(code(&voicectl(&env, &["numbers", "check"]).await), Some(2));

    // One number, then the rest; Twilio is read back each time.
    let one = voicectl(&env, &["numbers", "apply", "--number", "+14155550101"]).await;
    assert_eq!(code(&one), Some(0), "{}", text_of(&one));
    let report: Value =
        serde_json::from_slice(&voicectl(&env, &["--json", "numbers", "check"]).await.stdout)
            .unwrap();
    assert_eq!(
        drifted(&report),
        ["+14155550102", "+14155550103", "softphone"]
    );
    let rest = voicectl(&env, &["numbers", "apply"]).await;
    assert_eq!(code(&rest), Some(0), "{}", text_of(&rest));
    assert!(text_of(&rest).contains("3 changed; 0 still drifted"));
    let check = voicectl(&env, &["numbers", "check"]).await;
    assert_eq!(code(&check), Some(0), "{}", text_of(&check));
    assert!(text_of(&check).contains("0 of 5 drifted"));

    // Twilio unreachable: an error, exit 1, with the reason.
    let mut unreachable = env.clone();
    unreachable.retain(|(k, _)| k != "TWILIO_API_BASE");
    unreachable.push(("TWILIO_API_BASE".into(), "http://127.0.0.1:9".into()));
    let failed = voicectl(&unreachable, &["numbers", "check"]).await;
    assert_eq!(code(&failed), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("could not be reached"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_repairs_what_twilio_gave_up_on_and_nothing_else() {
    let stack = LocalStack::start(StackOptions {
        label: "voicectl-reconcile".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts");
    let env = stack_env(&stack);
    // A call whose callbacks all arrived: reconcile leaves it alone.
    let delivered = call_sid(0xdead);
    for (seq, status) in [CallStatus::Ringing, CallStatus::Completed]
        .into_iter()
        .enumerate()
    {
        let params = status_params(&delivered, status, Some(seq as u32));
        let response = voicehooks_tests::post_form(
            &stack.status_webhook_target(),
            &stack.status_webhook_public(),
            &params,
            Some(local::AUTH_TOKEN),
        )
        .await;
        assert_eq!(response.status(), 204);
    }
    stack.media.provisioned().add_call(
        local::ACCOUNT_SID,
        &voicectl::twilio_api::CallResource {
            sid: delivered.clone(),
            parent_call_sid: None,
            status: "completed".into(),
            from: "+14155550100".into(),
            to: "+16285550123".into(),
            direction: "outbound-api".into(),
            duration: 12,
        },
    );
    let lost = devstack::reconcile::place(&stack, 5, 77).await.unwrap();
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();

    let first = json_of(&voicectl(&env, &["--json", "reconcile", "--since", "2h"]).await);
    assert_eq!(first["calls_listed"], 6, "{first}");
    let repaired: Vec<&str> = first["statuses_repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap())
        .collect();
    assert_eq!(repaired.len(), 5, "{first}");
    assert!(!repaired.contains(&delivered.as_str()), "{first}");
    assert_eq!(first["recordings_queued"].as_array().unwrap().len(), 3);
    stack
        .wait_until_drained(Duration::from_secs(120))
        .await
        .unwrap();
    let unrepaired = devstack::reconcile::unrepaired(&stack, &lost)
        .await
        .unwrap();
    assert!(unrepaired.is_empty(), "{unrepaired:#?}");

    // The timeline says where the status came from.
    let (sid, _) = &lost.calls[0];
    let timeline = text_of(&voicectl(&env, &["call", sid]).await);
    assert!(timeline.contains("reconciled"), "{timeline}");

    // Run again: nothing left to repair.
    let again = json_of(&voicectl(&env, &["--json", "reconcile", "--since", "2h"]).await);
    assert_eq!(again["statuses_repaired"], serde_json::json!([]), "{again}");
    assert_eq!(again["recordings_queued"], serde_json::json!([]), "{again}");

    // The scheduled function does the same, invoked as EventBridge would.
    let later = devstack::reconcile::place(&stack, 4, 78).await.unwrap();
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&stack.sdk)
            .endpoint_url(stack.functions.endpoint())
            .build(),
    );
    let output = lambda
        .invoke()
        .function_name(devstack::local_stack::RECONCILER)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            r#"{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}"#,
        ))
        .send()
        .await
        .unwrap();
    assert!(output.function_error().is_none(), "{output:?}");
    let report: Value = serde_json::from_slice(output.payload().unwrap().as_ref()).unwrap();
    assert_eq!(
        report["statuses_repaired"].as_array().unwrap().len(),
        4,
        "{report}"
    );
    stack
        .wait_until_drained(Duration::from_secs(120))
        .await
        .unwrap();
    let unrepaired = devstack::reconcile::unrepaired(&stack, &later)
        .await
        .unwrap();
    assert!(unrepaired.is_empty(), "{unrepaired:#?}");
    stack.stop().await;
}
