//! `make chaos` in small: 60 calls through the local stack with the full fault mix (see
//! devstack/src/chaos.rs), a minute of SQS down and half a minute of Secrets Manager down,
//! Twilio delivering as it does, checked against the stand-in's ground truth. `make chaos`
//! plays 1,000.

use std::time::Duration;

use devstack::chaos::{self, ChaosOptions};
use devstack::faults::{Fault, Outage, Slowdown};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_under_faults_end_exactly_as_played() {
    let options = ChaosOptions {
        calls: 60,
        seed: 11,
        concurrency: 12,
        // Paced over two minutes, so calls are in flight through both outages.
        rate: Some(0.5),
        kills: 3,
        poisoned_calls: 2,
        outages: vec![
            Outage {
                service: "sqs",
                from: Duration::from_secs(15),
                lasts: Duration::from_secs(60),
            },
            Outage {
                service: "secretsmanager",
                from: Duration::from_secs(80),
                lasts: Duration::from_secs(30),
            },
        ],
        // As SQS comes back and its spill is drained: batches meet their deadlines.
        slowdowns: vec![Slowdown {
            service: "dynamodb",
            from: Duration::from_secs(75),
            lasts: Duration::from_secs(20),
            delay: Duration::from_secs(2),
            matching: None,
        }],
        release: false,
    };
    let outcome = chaos::run_checked(&options, "chaos-test")
        .await
        .expect("the chaos run plays");
    let mismatches = outcome.mismatches();
    assert!(
        mismatches.is_empty(),
        "{} mismatches, the first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );

    // The faults happened: otherwise the run proves nothing.
    let injected = |fault| outcome.injected.get(&fault).copied().unwrap_or(0);
    assert!(
        injected(Fault::EnqueueRefused) > 0,
        "{:?}",
        outcome.injected
    );
    assert!(
        injected(Fault::DynamoDbResponseLost) > 0,
        "{:?}",
        outcome.injected
    );
    assert!(injected(Fault::Poisoned) > 0, "{:?}", outcome.injected);
    assert!(injected(Fault::SqsOutage) > 0, "{:?}", outcome.injected);
    assert!(
        injected(Fault::SecretsManagerOutage) > 0,
        "{:?}",
        outcome.injected
    );
    assert!(injected(Fault::Slowed) > 0, "{:?}", outcome.injected);
    // Through SQS's outage the webhooks' breakers opened, spilled without asking SQS, and
    // closed again once it was back.
    let workers = &outcome.workers;
    assert!(
        workers.breaker_opened > 0 && workers.breaker_closed > 0 && workers.breaker_spills > 0,
        "{workers:?}"
    );
    // Through DynamoDB's slow spell, batches met their deadline with messages not started:
    // handed back, none of them dead-lettered (only the poisoned calls' events were).
    assert!(workers.handed_back > 0, "{workers:?}");
    let report = &outcome.demo.report;
    // Twilio gave up on nothing, and no genuine callback was refused (a 4xx). Its retries
    // are of 503s, events neither SQS nor the spill took; a refused spill is not always one,
    // since SQS, still going beside the spill or asked after it, may take the event.
    assert!(report.gave_up.is_empty(), "{:?}", report.gave_up);
    assert!(!report.retries.contains_key("4xx"), "{:?}", report.retries);
    // Through the SQS outage every callback spilled, and the drainer emptied the spill.
    let spill = outcome.demo.spill;
    assert!(spill.spilled > 20 && spill.drained > 20, "{spill:?}");
    // Through the Secrets Manager outage the webhooks kept checking signatures.
    assert!(outcome.tokens_stale > 0);
    assert!(report.duplicate_deliveries > 0 && report.reordered_legs > 0);
    assert!(!outcome.kills.is_empty(), "no worker was killed mid-batch");

    // The poisoned calls' events went to the DLQs and all came back after the fix.
    let dlq_in: u64 = outcome.dlq_in.values().sum();
    assert!(dlq_in > 0, "nothing reached a DLQ");
    assert_eq!(
        outcome.dlq_poisoned, dlq_in,
        "a healthy event was dead-lettered"
    );
    assert_eq!(outcome.redriven, dlq_in);
    assert_eq!(outcome.dlq_left, 0);

    // Each recording stored once, each transcription job started once.
    let recordings = &outcome.demo.recordings;
    assert!(recordings.expected > 0);
    assert_eq!(recordings.verified, recordings.expected);
    assert_eq!(outcome.audio_objects, recordings.expected);
    assert_eq!(outcome.transcription_jobs, recordings.expected);
    assert_eq!(outcome.transcription_starts, recordings.expected as u64);

    // The security check on the logs of a whole run: it read them, and they are clean.
    assert!(
        outcome.logs.files >= 7 && outcome.logs.lines > 500,
        "{:?}",
        outcome.logs
    );
    assert!(outcome.logs.is_clean(), "{:#?}", outcome.logs.findings());

    // Every function printed its CloudWatch embedded-metric-format lines.
    for function in [
        "webhook-status",
        "webhook-voice",
        "webhook-recording",
        "webhook-transcription",
        "status-worker",
        "recording-worker",
        "transcript-worker",
        "spill-drainer",
    ] {
        // All its instances' logs (a worker runs its mapping's MaximumConcurrency of them).
        let log = voicehooks_tests::instance_logs(&outcome.log_dir, function);
        let emf: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.contains("\"CloudWatchMetrics\""))
            .map(|l| serde_json::from_str(l).expect("an EMF line is JSON"))
            .collect();
        assert!(!emf.is_empty(), "{function} printed no metrics");
        assert!(
            emf.iter().all(|m| m["Function"] == function
                && m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Voicehooks"),
            "{function}: {:?}",
            emf[0]
        );
    }
}
