//! `make demo`: a few hundred calls through the local stack, checked against ground truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::config::local;
use shared::flows::Flows;
use shared::store::{CallRecord, DynamoCallStore};
use shared::twilio::CallStatus;
use voicectl::simulate::{self, SimulateOptions, SimulatedLeg, SimulationReport};

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
    /// Per call, in `report.calls` order: each leg's stored record, in `legs` order.
    pub records: Vec<Vec<Option<CallRecord>>>,
    /// Per call: the flow the routes send it to (what `call.started` should have stored).
    pub expected_flows: Vec<String>,
    /// Per call: whether every leg matched the ground truth.
    pub verified: Vec<bool>,
    pub mismatches: Vec<String>,
    pub drain_time: Duration,
}

impl DemoOutcome {
    fn stored(&self) -> impl Iterator<Item = &CallRecord> {
        self.records.iter().flatten().flatten()
    }
    pub fn duplicates_absorbed(&self) -> u64 {
        self.stored().map(|r| r.duplicates).sum()
    }
    pub fn late_events(&self) -> usize {
        self.stored().map(CallRecord::late_events).sum()
    }
}

/// Plays the calls through a running stack and checks every leg against the ground truth.
pub async fn play(stack: &LocalStack, options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let flows = Flows::built_in().map_err(|e| anyhow::anyhow!("{e}"))?;
    let simulate_options = SimulateOptions {
        calls: options.calls,
        seed: options.seed,
        concurrency: options.concurrency,
        duplicate_rate: options.duplicate_rate,
        reorder_rate: options.reorder_rate,
        max_attempts: 5,
        public_base_url: local::PUBLIC_BASE_URL.into(),
        routes: stack.routes(),
        numbers: flows.numbers().map(|(n, _)| n.to_owned()).collect(),
        softphone_rate: 0.1,
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
    let mut records = Vec::new();
    for call in &report.calls {
        let legs: Vec<Option<CallRecord>> = futures::stream::iter(&call.legs)
            .map(|leg| {
                let store = store.clone();
                async move { store.get_call(leg.call_sid()).await }
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        records.push(legs);
    }
    let expected_flows: Vec<String> = report
        .calls
        .iter()
        .map(|c| {
            let flow = flows.route(Some(&c.script.from), Some(&c.script.to));
            flow.unwrap_or(&flows.fallback_flow).to_owned()
        })
        .collect();
    let per_call: Vec<Vec<String>> = report
        .calls
        .iter()
        .zip(&records)
        .zip(&expected_flows)
        .map(|((call, legs), expected)| {
            let mut problems: Vec<String> = call
                .legs
                .iter()
                .zip(legs)
                .flat_map(|(leg, record)| simulate::mismatches(leg, record.as_ref()))
                .collect();
            let stored = legs
                .first()
                .and_then(|r| r.as_ref())
                .and_then(|r| r.flow.as_deref());
            if stored != Some(expected.as_str()) {
                problems.push(format!(
                    "{}: flow {stored:?}, expected {expected}",
                    call.call_sid()
                ));
            }
            problems
        })
        .collect();
    let verified = per_call.iter().map(Vec::is_empty).collect();
    let mut mismatches: Vec<String> = per_call.into_iter().flatten().collect();
    mismatches.extend(
        report
            .undelivered
            .iter()
            .map(|u| format!("undelivered: {u}")),
    );
    mismatches.extend(
        report
            .voice_errors
            .iter()
            .map(|e| format!("voice webhook: {e}")),
    );
    Ok(DemoOutcome {
        report,
        records,
        expected_flows,
        verified,
        mismatches,
        drain_time,
    })
}

pub async fn run(options: DemoOptions) -> anyhow::Result<bool> {
    println!(
        "voicehooks demo: {} calls. Twilio stand-in → webhook-voice (TwiML) → follows the flow → \
         status callbacks of every leg → webhook-status → SQS → status-worker → DynamoDB (local)",
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

/// One row of the table: what the calls that a flow answered did.
#[derive(Default)]
struct FlowRow {
    calls: usize,
    voice_requests: usize,
    dialled: usize,
    answered: usize,
    recordings: usize,
    verified: usize,
}

fn print_outcome(outcome: &DemoOutcome) {
    let report = &outcome.report;
    let mut rows: BTreeMap<&str, FlowRow> = BTreeMap::new();
    for ((call, verified), flow) in report
        .calls
        .iter()
        .zip(&outcome.verified)
        .zip(&outcome.expected_flows)
    {
        let row = rows.entry(flow).or_default();
        row.calls += 1;
        row.voice_requests += call.conversation.voice_requests.len();
        row.dialled += call.legs.len() - 1;
        row.answered += call.legs[1..]
            .iter()
            .filter(|l| l.final_status() == CallStatus::Completed)
            .count();
        row.recordings += call
            .conversation
            .requested
            .iter()
            .filter(|r| r.url.ends_with("/twilio/recording"))
            .count();
        row.verified += usize::from(*verified);
    }
    println!();
    println!(
        "  {:<12} {:>6} {:>14} {:>12} {:>9} {:>11} {:>9}",
        "flow", "calls", "voice requests", "legs dialled", "answered", "recordings", "verified"
    );
    println!(
        "  {:-<12} {:->6} {:->14} {:->12} {:->9} {:->11} {:->9}",
        "", "", "", "", "", "", ""
    );
    let mut total = FlowRow::default();
    for (flow, row) in &rows {
        println!(
            "  {flow:<12} {:>6} {:>14} {:>12} {:>9} {:>11} {:>9}",
            row.calls, row.voice_requests, row.dialled, row.answered, row.recordings, row.verified
        );
        total.calls += row.calls;
        total.voice_requests += row.voice_requests;
        total.dialled += row.dialled;
        total.answered += row.answered;
        total.recordings += row.recordings;
        total.verified += row.verified;
    }
    println!(
        "  {:<12} {:>6} {:>14} {:>12} {:>9} {:>11} {:>9}",
        "total",
        total.calls,
        total.voice_requests,
        total.dialled,
        total.answered,
        total.recordings,
        total.verified
    );
    println!();

    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for leg in report.legs() {
        *by_status.entry(leg.final_status().as_str()).or_default() += 1;
    }
    let finals: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "  legs stored              {} ({})",
        report.legs().count(),
        finals.join(", ")
    );
    println!(
        "  status callbacks sent    {} + {} duplicate deliveries, {} legs reordered",
        report.status_callbacks(),
        report.duplicate_deliveries,
        report.reordered_legs
    );
    println!(
        "  acknowledged (2xx)       {} in {:.1} s, {} retries after non-2xx",
        report.acknowledged,
        report.elapsed.as_secs_f64(),
        report.retries
    );
    println!(
        "  TwiML answers            {}, p50 {:.1} ms, p99 {:.1} ms, {} errors",
        report.voice_latency_us.len(),
        report.voice_latency_ms(50.0),
        report.voice_latency_ms(99.0),
        report.voice_errors.len()
    );
    println!(
        "  callback ack latency     p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
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
    if !report.unrouted.is_empty() {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for url in &report.unrouted {
            *kinds
                .entry(url.rsplit('/').next().unwrap_or(url))
                .or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  asked for, no route yet  {} (recordings come next)",
            kinds.join(", ")
        );
    }
    println!(
        "  queue drained            {:.1} s after the last acknowledgement",
        outcome.drain_time.as_secs_f64()
    );
    println!("  mismatches               {}", outcome.mismatches.len());

    let example = report
        .calls
        .iter()
        .zip(&outcome.records)
        .flat_map(|(c, rs)| c.legs.iter().zip(rs))
        .find(|(leg, r)| leg.reordered && r.as_ref().is_some_and(|r| r.late_events() > 0));
    if let Some((leg, record)) = example {
        println!();
        print_timeline(leg, record.as_ref());
    }
    for mismatch in outcome.mismatches.iter().take(20) {
        println!("  MISMATCH {mismatch}");
    }
}

/// One leg's stored timeline, as an example of a reordered leg put right.
fn print_timeline(leg: &SimulatedLeg, record: Option<&CallRecord>) {
    let Some(record) = record else { return };
    let sent: Vec<String> = leg
        .delivery_order
        .iter()
        .map(|&i| leg.callbacks[i].status.to_string())
        .collect();
    println!(
        "  example {}: delivered {}",
        leg.call_sid(),
        sent.join(", ")
    );
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
