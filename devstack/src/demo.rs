//! `make demo`: a few hundred calls through the local stack, checked against ground truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::config::local;
use shared::store::{CallRecord, DynamoCallStore};
use shared::twilio::CallStatus;
use voicectl::simulate::{self, SimulateOptions, SimulatedCall, SimulationReport};

use crate::stack::{LocalStack, StackOptions};

pub struct DemoOptions {
    pub calls: usize,
    pub seed: u64,
    pub concurrency: usize,
    pub duplicate_rate: f64,
    pub reorder_rate: f64,
}

/// What the demo found.
pub struct DemoOutcome {
    pub report: SimulationReport,
    pub records: Vec<Option<CallRecord>>,
    /// Per call, in `report.calls` order: whether it matched the ground truth.
    pub verified: Vec<bool>,
    pub mismatches: Vec<String>,
    pub drain_time: Duration,
}

impl DemoOutcome {
    pub fn duplicates_absorbed(&self) -> u64 {
        self.records.iter().flatten().map(|r| r.duplicates).sum()
    }
    pub fn late_events(&self) -> usize {
        self.records
            .iter()
            .flatten()
            .map(CallRecord::late_events)
            .sum()
    }
}

/// Plays the calls through a running stack and checks every call against the ground truth.
pub async fn play(stack: &LocalStack, options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let simulate_options = SimulateOptions {
        calls: options.calls,
        seed: options.seed,
        concurrency: options.concurrency,
        duplicate_rate: options.duplicate_rate,
        reorder_rate: options.reorder_rate,
        max_attempts: 5,
        target_url: stack.status_webhook_target(),
        public_url: stack.status_webhook_public(),
        account_sid: local::ACCOUNT_SID.into(),
        auth_token: local::AUTH_TOKEN.into(),
    };
    let report = simulate::run(&simulate_options).await?;
    let drain_started = Instant::now();
    stack.wait_until_drained(Duration::from_secs(180)).await?;
    let drain_time = drain_started.elapsed();

    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let records: Vec<Option<CallRecord>> = futures::stream::iter(report.calls.iter())
        .map(|call| {
            let store = store.clone();
            async move { store.get_call(&call.call_sid).await }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let per_call: Vec<Vec<String>> = report
        .calls
        .iter()
        .zip(&records)
        .map(|(call, record)| simulate::mismatches(call, record.as_ref()))
        .collect();
    let verified = per_call.iter().map(Vec::is_empty).collect();
    let mut mismatches: Vec<String> = per_call.into_iter().flatten().collect();
    mismatches.extend(
        report
            .undelivered
            .iter()
            .map(|u| format!("undelivered: {u}")),
    );
    Ok(DemoOutcome {
        report,
        records,
        verified,
        mismatches,
        drain_time,
    })
}

pub async fn run(options: DemoOptions) -> anyhow::Result<bool> {
    println!(
        "voicehooks demo: {} calls, Twilio stand-in → webhook-status → SQS → status-worker → DynamoDB (local)",
        options.calls
    );
    let started = Instant::now();
    let stack = LocalStack::start(StackOptions {
        label: "demo".into(),
        ..Default::default()
    })
    .await?;
    println!(
        "  stack up in {:.1} s (moto {}, functions {}, logs {})",
        started.elapsed().as_secs_f64(),
        stack.emulator.endpoint,
        stack.functions.endpoint(),
        stack.log_dir.display()
    );
    let outcome = play(&stack, &options).await;
    stack.stop().await;
    let outcome = outcome?;
    print_outcome(&outcome);
    Ok(outcome.mismatches.is_empty())
}

fn print_outcome(outcome: &DemoOutcome) {
    let report = &outcome.report;
    let mut by_status: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (call, verified) in report.calls.iter().zip(&outcome.verified) {
        let entry = by_status.entry(call.final_status.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(*verified);
    }
    println!();
    println!("  {:<14} {:>7} {:>10}", "final status", "calls", "verified");
    println!("  {:-<14} {:->7} {:->10}", "", "", "");
    for (status, (calls, verified)) in &by_status {
        println!("  {status:<14} {calls:>7} {verified:>10}");
    }
    let verified: usize = by_status.values().map(|v| v.1).sum();
    println!(
        "  {:<14} {:>7} {:>10}",
        "total",
        report.calls.len(),
        verified
    );
    println!();

    let callbacks: usize = report.calls.iter().map(|c| c.callbacks.len()).sum();
    println!(
        "  callbacks sent           {callbacks} + {} duplicate deliveries, {} calls reordered",
        report.duplicate_deliveries, report.reordered_calls
    );
    println!(
        "  acknowledged (2xx)       {} in {:.1} s, {} retries after non-2xx",
        report.acknowledged,
        report.elapsed.as_secs_f64(),
        report.retries
    );
    println!(
        "  ack latency              p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        report.latency_ms(50.0),
        report.latency_ms(90.0),
        report.latency_ms(99.0)
    );
    println!(
        "  duplicates absorbed      {} (not applied twice)",
        outcome.duplicates_absorbed()
    );
    println!(
        "  late events recorded     {} (in the timeline, not applied)",
        outcome.late_events()
    );
    println!(
        "  queue drained            {:.1} s after the last acknowledgement",
        outcome.drain_time.as_secs_f64()
    );
    println!("  mismatches               {}", outcome.mismatches.len());

    if let Some((call, record)) = report
        .calls
        .iter()
        .zip(&outcome.records)
        .find(|(c, r)| c.reordered && r.as_ref().is_some_and(|r| r.late_events() > 0))
    {
        println!();
        print_timeline(call, record.as_ref());
    }
    for mismatch in outcome.mismatches.iter().take(20) {
        println!("  MISMATCH {mismatch}");
    }
}

/// One call's stored timeline, as an example of a reordered call put right.
fn print_timeline(call: &SimulatedCall, record: Option<&CallRecord>) {
    let Some(record) = record else { return };
    let sent: Vec<String> = call
        .delivery_order
        .iter()
        .map(|&i| call.callbacks[i].status.to_string())
        .collect();
    println!("  example {}: delivered {}", call.call_sid, sent.join(", "));
    for entry in &record.timeline {
        let seq = entry.sequence_number.map_or("-".into(), |s| s.to_string());
        let note = if entry.applied {
            "applied"
        } else {
            "late: recorded, not applied"
        };
        println!("    seq {seq:>2}  {:<12} {note}", entry.status);
    }
    let final_status = record.status.as_deref().unwrap_or("?");
    let terminal = final_status
        .parse::<CallStatus>()
        .is_ok_and(CallStatus::is_terminal);
    println!(
        "    final: {final_status}{}, {} duplicate deliveries absorbed",
        if terminal { " (terminal)" } else { "" },
        record.duplicates
    );
}
