//! `make bench`'s report, every figure beside its goal:
//! 1. ingress compute per request, read from criterion's estimates, beside twilio-node (the
//!    official helper) timed on the same inputs;
//! 2. cold starts of every function binary against a stand-in Runtime API, and the size of
//!    every arm64 bootstrap;
//! 3. AWS calls per event, from the functions' own EMF lines (`voicehooks::aws::CallMetrics`)
//!    during a demo run, and what they cost per million calls;
//! 4. end to end on the local stack: ack latency at rising call rates, where the time goes,
//!    and events per second through the workers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use voicectl::simulate::{self, SimulateOptions};
use voicehooks::aws::CALL_LATENCY_METRIC;
use voicehooks::metrics::name;

use crate::coldstart;
use crate::emf::Emf;
use crate::local_stack::{self, LocalStack, StackOptions};
use crate::workspace::Workspace;

/// The twilio-node release the peer figures come from (pinned: figures must be comparable
/// from run to run).
pub const TWILIO_NODE: &str = "6.2.0";

pub struct BenchOptions {
    /// Calls of the demo run that AWS calls are counted in.
    pub calls: usize,
    /// Calls per second of the end-to-end runs, in order.
    pub rates: Vec<f64>,
    /// Seconds each end-to-end rate is played for.
    pub seconds_per_rate: f64,
    /// Cold starts per function (the median is reported).
    pub cold_starts: usize,
}

pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let workspace = Workspace::locate();
    ingress(&workspace)?;
    let stack = LocalStack::start(StackOptions {
        label: "bench".into(),
        release: true,
        ..StackOptions::default()
    })
    .await?;
    cold_starts(&workspace, &stack, options.cold_starts).await?;
    aws_calls(&stack, options.calls).await?;
    end_to_end(&stack, &options).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Ingress compute

/// (criterion id, what it is, the twilio-node figure it is compared with)
const INGRESS: [(&str, &str, Option<&str>); 6] = [
    (
        "status_callback",
        "status callback: form decode + signature check + envelope JSON",
        None,
    ),
    (
        "acknowledge",
        "  the handler's whole path around it, but the I/O (no goal)",
        None,
    ),
    (
        "signature_check",
        "  of which the signature check",
        Some("signature_check"),
    ),
    (
        "twiml_forward",
        "TwiML for a new call, forward flow",
        Some("twiml_forward"),
    ),
    (
        "twiml_menu",
        "TwiML for a new call, menu flow",
        Some("twiml_menu"),
    ),
    (
        "twiml_menu_answer",
        "TwiML for a menu answer that forwards",
        None,
    ),
];
const INGRESS_GOAL_NS: f64 = 2_000.0;

fn ingress(workspace: &Workspace) -> anyhow::Result<()> {
    let criterion = workspace.target_dir().join("criterion/ingress");
    let inputs = workspace.target_dir().join("bench/peer-inputs.json");
    let peer = twilio_node(workspace, &inputs);
    println!("\n1. Ingress compute per request (criterion median, no I/O; goal < 2 µs each)");
    match &peer {
        Ok(p) => println!(
            "   peer: twilio-node {} on node {}, same inputs (validateRequest, VoiceResponse)",
            p["twilio"].as_str().unwrap_or("?"),
            p["node"].as_str().unwrap_or("?")
        ),
        Err(e) => println!("   peer: twilio-node not run: {e:#}"),
    }
    println!(
        "   {:<62} {:>9} {:>6} {:>12} {:>9}",
        "", "ours", "goal", "twilio-node", "ratio"
    );
    for (id, label, peer_id) in INGRESS {
        let ours = criterion_median_ns(&criterion.join(id))?;
        let (theirs, ratio) = match (peer_id, &peer) {
            (Some(pid), Ok(p)) => {
                let theirs = p[format!("{pid}_ns")].as_f64().unwrap_or(f64::NAN);
                let same = p[format!("{pid}_same_document")].as_bool().unwrap_or(true)
                    && (pid != "signature_check" || p["signature_valid"] == true);
                (
                    format!("{}{}", nanos(theirs), if same { "" } else { " (differs!)" }),
                    format!("{:.0}x", theirs / ours),
                )
            }
            _ => (String::new(), String::new()),
        };
        println!(
            "   {label:<62} {:>9} {:>6} {theirs:>12} {ratio:>9}",
            nanos(ours),
            if id == "acknowledge" {
                ""
            } else {
                verdict(ours <= INGRESS_GOAL_NS)
            },
        );
    }
    Ok(())
}

fn criterion_median_ns(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(&std::fs::read(&path).with_context(|| {
        format!(
            "{}: run `cargo bench -p voicehooks --bench ingress` first",
            path.display()
        )
    })?)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{} has no median", path.display()))
}

/// Installs the pinned twilio package into a temporary folder and times it there on the
/// inputs the Rust benchmark wrote.
fn twilio_node(workspace: &Workspace, inputs: &Path) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("voicehooks-twilio-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let installed = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .arg(format!("twilio@{TWILIO_NODE}"))
            .output()
            .context("npm")?;
        anyhow::ensure!(
            installed.status.success(),
            "npm install twilio@{TWILIO_NODE}: {}",
            String::from_utf8_lossy(&installed.stderr).trim()
        );
        let script = dir.join("twilio-node.js");
        std::fs::copy(workspace.root.join("devstack/peer/twilio-node.js"), &script)?;
        let ran = Command::new("node")
            .arg(&script)
            .arg(inputs)
            .output()
            .context("node")?;
        anyhow::ensure!(
            ran.status.success(),
            "node: {}",
            String::from_utf8_lossy(&ran.stderr).trim()
        );
        let stdout = String::from_utf8_lossy(&ran.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        Ok(serde_json::from_str(line)?)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

// ---------------------------------------------------------------------------------------
// 2. Cold starts and sizes

const READY_GOAL: Duration = Duration::from_millis(15);
const SIZE_GOAL_BYTES: u64 = 6 * 1024 * 1024;

/// The event each function gets first: a committed sample from `events/`.
const FIRST_EVENTS: [(&str, &str); 7] = [
    (local_stack::WEBHOOK_STATUS, "webhook-status/completed.json"),
    (
        local_stack::WEBHOOK_VOICE,
        "webhook-voice/new-call-sales-forward.json",
    ),
    (
        local_stack::WEBHOOK_RECORDING,
        "webhook-recording/completed.json",
    ),
    (
        local_stack::WEBHOOK_TRANSCRIPTION,
        "webhook-transcription/completed.json",
    ),
    (local_stack::STATUS_WORKER, "status-worker/sqs-batch.json"),
    (
        local_stack::RECORDING_WORKER,
        "recording-worker/sqs-batch.json",
    ),
    (
        local_stack::TRANSCRIPT_WORKER,
        "transcript-worker/sqs-batch.json",
    ),
];

async fn cold_starts(workspace: &Workspace, stack: &LocalStack, runs: usize) -> anyhow::Result<()> {
    println!(
        "\n2. Cold start: release binary exec'd against a stand-in Runtime API, median of {runs} \
         (this machine, x86_64; goal ready < 15 ms), and the arm64 bootstrap (goal < 6 MB)"
    );
    println!(
        "   {:<22} {:>11} {:>6} {:>16} {:>12} {:>6}",
        "function", "exec→ready", "goal", "exec→1st answer", "arm64 size", "goal"
    );
    for (function, event) in FIRST_EVENTS {
        let spec = stack
            .functions
            .specs()
            .iter()
            .find(|s| s.name == function)
            .with_context(|| format!("no function {function}"))?;
        let binary = workspace.release_binary(function);
        anyhow::ensure!(
            binary.exists(),
            "{}: run `cargo build --release` first",
            binary.display()
        );
        let event = std::fs::read(workspace.events().join(event))?;
        let mut samples = Vec::new();
        for run in 0..runs {
            let log = stack
                .log_dir
                .join(format!("coldstart-{function}-{run}.log"));
            samples.push(coldstart::measure(&binary, spec, event.clone(), &log).await?);
        }
        let median = |f: fn(&coldstart::ColdStart) -> Duration| {
            let mut v: Vec<Duration> = samples.iter().map(f).collect();
            v.sort();
            v[v.len() / 2]
        };
        let ready = median(|c| c.ready);
        let answered = median(|c| c.first_response);
        let errors = samples.iter().filter(|c| !c.ok).count();
        let size = std::fs::metadata(workspace.lambda_bootstrap(function)).map(|m| m.len());
        println!(
            "   {function:<22} {:>11} {:>6} {:>16} {:>12} {:>6}{}",
            millis(ready),
            verdict(ready < READY_GOAL),
            millis(answered),
            size.as_ref().map_or("not built".into(), |s| format!(
                "{:.2} MB",
                *s as f64 / 1048576.0
            )),
            size.as_ref().map_or("", |s| verdict(*s < SIZE_GOAL_BYTES)),
            if errors > 0 {
                format!("  ({errors} answered with an error)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. AWS calls per event

fn is_write(op: &str) -> bool {
    ["Put", "Update", "Delete", "TransactWrite", "BatchWrite"]
        .iter()
        .any(|w| op.starts_with(w))
}

/// S3's request classes (priced apart): PUT, COPY, POST, LIST against GET, HEAD and the rest.
fn is_s3_put_class(op: &str) -> bool {
    op.starts_with("Put")
        || op.starts_with("Copy")
        || op.starts_with("List")
        || op.contains("MultipartUpload")
        || op == "UploadPart"
}

const WEBHOOKS: [&str; 4] = [
    local_stack::WEBHOOK_STATUS,
    local_stack::WEBHOOK_VOICE,
    local_stack::WEBHOOK_RECORDING,
    local_stack::WEBHOOK_TRANSCRIPTION,
];
const WORKERS: [&str; 3] = [
    local_stack::STATUS_WORKER,
    local_stack::RECORDING_WORKER,
    local_stack::TRANSCRIPT_WORKER,
];

/// Public list prices, us-east-1, per million requests (checked November 2026).
struct Price {
    what: &'static str,
    per_million: f64,
}
const API_GATEWAY: Price = Price {
    what: "API Gateway HTTP API requests",
    per_million: 1.00,
};
const LAMBDA: Price = Price {
    what: "Lambda requests",
    per_million: 0.20,
};
const SQS: Price = Price {
    what: "SQS requests (standard queue, 64 KB each)",
    per_million: 0.40,
};
const DYNAMO_WRITE: Price = Price {
    what: "DynamoDB on-demand writes (WRU, 1 per ≤1 KB)",
    per_million: 0.625,
};
const DYNAMO_READ: Price = Price {
    what: "DynamoDB on-demand reads (RRU)",
    per_million: 0.125,
};
const S3_PUT: Price = Price {
    what: "S3 PUT/COPY/POST/LIST requests",
    per_million: 5.00,
};
const S3_GET: Price = Price {
    what: "S3 GET/HEAD requests (DELETE is free)",
    per_million: 0.40,
};
const SECRETS: Price = Price {
    what: "Secrets Manager API calls",
    per_million: 5.00,
};

/// Part 3 of the report, AWS calls per event and what they cost: `calls` calls played in
/// order, once each, and every request the functions' SDK interceptor counted meanwhile.
async fn aws_calls(stack: &LocalStack, calls: usize) -> anyhow::Result<()> {
    let (played, emf) = play_in_order(stack, calls).await?;
    print_calls_per_event(&emf, calls);
    print_cost_of_requests(&emf, played);
    Ok(())
}

/// Plays `calls` calls in order and once each (the path the per-event goals are about),
/// waits for the queues to drain, and reads the EMF lines they left. Returns how many
/// calls were played.
async fn play_in_order(stack: &LocalStack, calls: usize) -> anyhow::Result<(usize, Emf)> {
    let (_, before) = Emf::read(&stack.log_dir, &BTreeMap::new())?;
    let options = SimulateOptions {
        calls,
        seed: 42,
        concurrency: 16,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        routes: stack.routes(),
        ..SimulateOptions::default()
    };
    let report = simulate::run_with_media(
        &options,
        Some(&stack.media),
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    stack.wait_until_drained(Duration::from_secs(900)).await?;
    // The last invocations' EMF lines are printed as they end: give them a moment to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (emf, _) = Emf::read(&stack.log_dir, &before)?;
    Ok((report.calls.len(), emf))
}

/// `+ 0.0`: a sum of nothing is -0.0.
fn per(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d + 0.0 } else { f64::NAN }
}

/// Each kind of event's AWS requests, beside its goal.
fn print_calls_per_event(emf: &Emf, calls: usize) {
    let callbacks_accepted: f64 = WEBHOOKS
        .iter()
        .filter(|f| **f != local_stack::WEBHOOK_VOICE)
        .map(|f| emf.sum(f, name::ACCEPTED))
        .sum();
    let callback_sends: f64 = WEBHOOKS
        .iter()
        .filter(|f| **f != local_stack::WEBHOOK_VOICE)
        .map(|f| emf.calls(f, "SQS", |o| o == "SendMessage"))
        .sum();
    let voice_requests = emf.invocations(local_stack::WEBHOOK_VOICE);
    let voice_sends = emf.calls(local_stack::WEBHOOK_VOICE, "SQS", |o| o == "SendMessage");
    let applied = emf.sum(local_stack::STATUS_WORKER, name::EVENTS_APPLIED);
    // SQS does not keep order across the workers' batches, so a few events arrive late even
    // here; a late or duplicate event costs its failed conditional write and one more.
    let out_of_order = emf.sum(local_stack::STATUS_WORKER, name::EVENTS_DUPLICATE)
        + emf.sum(local_stack::STATUS_WORKER, name::EVENTS_LATE);
    let status_events = applied + out_of_order;
    let status_writes = emf.calls(local_stack::STATUS_WORKER, "DynamoDB", is_write);
    let in_order_writes = per(status_writes - 2.0 * out_of_order, applied);
    let status_reads = emf.calls(local_stack::STATUS_WORKER, "DynamoDB", |o| !is_write(o));
    let recordings = emf.sum(local_stack::RECORDING_WORKER, name::RECORDINGS_ARCHIVED);
    let recording_s3 = emf.calls(local_stack::RECORDING_WORKER, "S3", |_| true);
    let transcripts = emf.sum(
        local_stack::TRANSCRIPT_WORKER,
        name::TRANSCRIPTIONS_COMPLETED,
    );
    let transcript_s3 = emf.calls(local_stack::TRANSCRIPT_WORKER, "S3", |_| true);
    let readers: Vec<f64> = emf
        .secret_reads
        .iter()
        .filter(|(file, _)| {
            WEBHOOKS
                .iter()
                .chain([&local_stack::RECORDING_WORKER])
                .any(|f| file.starts_with(f))
        })
        .map(|(_, n)| *n)
        .collect();
    let max_reads = readers.iter().copied().fold(0.0, f64::max);

    println!(
        "\n3. AWS calls per event, counted by the SDK interceptor in every function (EMF \
         `Aws.<Service>.<Operation>`), during {calls} calls played in order, once each"
    );
    let row = |what: &str, value: f64, goal: &str, ok: Option<bool>| {
        println!(
            "   {what:<58} {value:>8.3} {goal:>18} {}",
            ok.map_or("", verdict)
        )
    };
    row(
        "SQS sends per accepted callback (status, recording, transcription)",
        per(callback_sends, callbacks_accepted),
        "exactly 1",
        Some((per(callback_sends, callbacks_accepted) - 1.0).abs() < 1e-9),
    );
    row(
        "SQS sends per voice request (call.started on a new call)",
        per(voice_sends, voice_requests),
        "≤ 1",
        Some(per(voice_sends, voice_requests) <= 1.0),
    );
    row(
        &format!("DynamoDB writes per status event applied in order ({applied})"),
        in_order_writes,
        "exactly 1",
        Some((in_order_writes - 1.0).abs() < 1e-9),
    );
    row(
        &format!("  all {status_events} status events, {out_of_order} late or duplicate"),
        per(status_writes, status_events),
        "",
        None,
    );
    row(
        "DynamoDB reads per status event",
        per(status_reads, status_events),
        "0",
        Some(status_reads == 0.0),
    );
    row(
        "S3 requests per recording archived",
        per(recording_s3, recordings),
        "",
        None,
    );
    for (op, n) in emf.operations(local_stack::RECORDING_WORKER, "S3") {
        println!("     {op:<56} {:>8.3}", per(n, recordings));
    }
    row(
        "S3 requests per transcript stored",
        per(transcript_s3, transcripts),
        "",
        None,
    );
    row(
        &format!(
            "Secrets Manager reads per cold start (max of {} instances)",
            readers.len()
        ),
        max_reads,
        "1, then cached",
        Some(max_reads <= 1.0),
    );
}

/// Cost per million calls: every request the run made, divided by its calls, at list prices.
fn print_cost_of_requests(emf: &Emf, calls: usize) {
    let recordings = emf.sum(local_stack::RECORDING_WORKER, name::RECORDINGS_ARCHIVED);
    let calls_f = calls as f64;
    let sum_all = |service: &str, op: &dyn Fn(&str) -> bool| -> f64 {
        WEBHOOKS
            .iter()
            .chain(WORKERS.iter())
            .map(|f| emf.calls(f, service, op))
            .sum()
    };
    let invocations: f64 = WEBHOOKS
        .iter()
        .chain(WORKERS.iter())
        .map(|f| emf.invocations(f))
        .sum();
    let webhook_requests: f64 = WEBHOOKS.iter().map(|f| emf.invocations(f)).sum();
    let worker_batches: f64 = WORKERS.iter().map(|f| emf.invocations(f)).sum();
    // Lambda's event source mapping receives each batch and deletes it: two SQS requests a
    // batch, made on our behalf and billed to the queue's owner.
    let sqs = sum_all("SQS", &|_| true) + 2.0 * worker_batches;
    let lines = [
        (API_GATEWAY, webhook_requests),
        (LAMBDA, invocations),
        (SQS, sqs),
        (DYNAMO_WRITE, sum_all("DynamoDB", &is_write)),
        (DYNAMO_READ, sum_all("DynamoDB", &|o| !is_write(o))),
        (S3_PUT, sum_all("S3", &is_s3_put_class)),
        (
            S3_GET,
            sum_all("S3", &|o| !is_s3_put_class(o) && !o.starts_with("Delete")),
        ),
        (SECRETS, sum_all("SecretsManager", &|_| true)),
    ];
    println!(
        "\n   Cost per million calls (this run's mix: {:.2} webhooks and {:.2} recordings a call; \
         us-east-1 list prices)",
        webhook_requests / calls_f,
        recordings / calls_f
    );
    println!(
        "   {:<48} {:>10} {:>14} {:>12}",
        "", "per call", "$ per million", "$ per 1M calls"
    );
    let mut total = 0.0;
    for (price, count) in lines {
        let per_call = count / calls_f;
        let cost = per_call * price.per_million;
        total += cost;
        println!(
            "   {:<48} {per_call:>10.3} {:>14.3} {cost:>12.2}",
            price.what, price.per_million
        );
    }
    println!(
        "   {:<48} {:>10} {:>14} {total:>12.2}",
        "total (requests only)", "", ""
    );
    println!(
        "   Not in the total: Lambda duration (GB-s; depends on memory size and AWS's own \
         latency, not measurable on the emulator), Amazon Transcribe ($0.024 per audio \
         minute), KMS, storage and logs."
    );
}

// ---------------------------------------------------------------------------------------
// 4. End to end

async fn end_to_end(stack: &LocalStack, options: &BenchOptions) -> anyhow::Result<()> {
    println!(
        "\n4. End to end on the local stack (moto + cargo-lambda): callback acks as the Twilio \
         stand-in sees them, and where the time goes (medians)"
    );
    println!(
        "   {:>7} {:>6} {:>9} {:>9} {:>10} {:>13} {:>12} {:>14} {:>10}",
        "calls/s",
        "calls",
        "ack p50",
        "ack p99",
        "TwiML p50",
        "in function",
        "waiting AWS",
        "our code+SDK",
        "events/s"
    );
    let mut offsets = Emf::read(&stack.log_dir, &BTreeMap::new())?.1;
    for &rate in &options.rates {
        let calls = ((rate * options.seconds_per_rate).round() as usize).max(4);
        let simulate = SimulateOptions {
            calls,
            seed: 7,
            concurrency: 64,
            rate: Some(rate),
            routes: stack.routes(),
            ..SimulateOptions::default()
        };
        let started = Instant::now();
        let report = simulate::run_with_media(
            &simulate,
            Some(&stack.media),
            &indicatif::ProgressBar::hidden(),
        )
        .await?;
        stack.wait_until_drained(Duration::from_secs(900)).await?;
        let through = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (emf, next) = Emf::read(&stack.log_dir, &offsets)?;
        offsets = next;
        let callbacks = [
            local_stack::WEBHOOK_STATUS,
            local_stack::WEBHOOK_RECORDING,
            local_stack::WEBHOOK_TRANSCRIPTION,
        ];
        let in_function = median(emf.all_values(&callbacks, name::ACK_LATENCY));
        let waiting = median(emf.all_values(&callbacks, CALL_LATENCY_METRIC));
        let events: f64 = [
            name::EVENTS_APPLIED,
            name::EVENTS_DUPLICATE,
            name::EVENTS_LATE,
        ]
        .iter()
        .map(|m| emf.sum(local_stack::STATUS_WORKER, m))
        .sum();
        println!(
            "   {rate:>7.1} {calls:>6} {:>9} {:>9} {:>10} {:>13} {:>12} {:>14} {:>10.0}",
            format!("{:.1} ms", report.latency_ms(50.0)),
            format!("{:.1} ms", report.latency_ms(99.0)),
            format!("{:.1} ms", report.voice_latency_ms(50.0)),
            format!("{in_function:.2} ms"),
            format!("{waiting:.2} ms"),
            format!("{:.2} ms", in_function - waiting),
            events / through.as_secs_f64(),
        );
    }
    println!(
        "   ack = the stand-in's request to its 2xx; in function = the handler (EMF AckLatency); \
         waiting AWS = the SQS send's round trip to moto (EMF AwsCallLatency); the rest of the \
         ack is cargo-lambda's HTTP and Runtime API emulation. events/s = status events applied \
         / time from first call to drained queues."
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn nanos(ns: f64) -> String {
    if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1_000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emf_line(function: &str, metrics: &[(&str, Value)]) -> String {
        let mut doc = serde_json::json!({
            "_aws": {"Timestamp": 0, "CloudWatchMetrics": [{
                "Namespace": "Voicehooks",
                "Dimensions": [["Stack", "Function"]],
                "Metrics": metrics.iter().map(|(n, _)| serde_json::json!({"Name": n})).collect::<Vec<_>>(),
            }]},
            "Function": function,
        });
        for (name, value) in metrics {
            doc[*name] = value.clone();
        }
        doc.to_string()
    }

    #[test]
    fn function_logs_sum_per_function_and_read_from_an_offset() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("voicehooks-emf-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let secret = "Aws.SecretsManager.GetSecretValue";
        let first = [
            emf_line(
                "webhook-status",
                &[(secret, 1.into()), ("Aws.SQS.SendMessage", 1.into())],
            ),
            "2026-11-23T10:00:00Z INFO not a metric line".into(),
            emf_line(
                "webhook-status",
                &[
                    ("Aws.SQS.SendMessage", 1.into()),
                    (name::ACK_LATENCY, serde_json::json!([1.5])),
                ],
            ),
        ];
        std::fs::write(dir.join("webhook-status-0.log"), first.join("\n") + "\n")?;
        std::fs::write(
            dir.join("webhook-status-1.log"),
            emf_line("webhook-status", &[(secret, 1.into())]) + "\n",
        )?;
        // Not a stack process: the cold-start probes and other logs are left out.
        std::fs::write(
            dir.join("coldstart-webhook-status-0.log"),
            emf_line("webhook-status", &[(secret, 9.into())]),
        )?;
        std::fs::write(dir.join("moto.log"), emf_line("x", &[(secret, 9.into())]))?;

        let (emf, offsets) = Emf::read(&dir, &BTreeMap::new())?;
        assert_eq!(emf.invocations("webhook-status"), 3.0);
        assert_eq!(
            emf.calls("webhook-status", "SQS", |o| o == "SendMessage"),
            2.0
        );
        assert_eq!(emf.sum("webhook-status", secret), 2.0);
        assert_eq!(
            emf.all_values(&["webhook-status"], name::ACK_LATENCY),
            vec![1.5]
        );
        let mut reads: Vec<f64> = emf.secret_reads.iter().map(|(_, n)| *n).collect();
        reads.sort_by(f64::total_cmp);
        assert_eq!(reads, vec![1.0, 1.0]);

        // A window: only what was written after the offsets.
        let more = emf_line("webhook-status", &[("Aws.SQS.SendMessage", 1.into())]);
        std::fs::write(
            dir.join("webhook-status-0.log"),
            first.join("\n") + "\n" + &more + "\n",
        )?;
        let (window, _) = Emf::read(&dir, &offsets)?;
        assert_eq!(window.invocations("webhook-status"), 1.0);
        assert_eq!(window.sum("webhook-status", secret), 0.0);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn operations_fall_into_their_price_classes() {
        for write in [
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "TransactWriteItems",
            "BatchWriteItem",
        ] {
            assert!(is_write(write), "{write}");
        }
        for read in ["GetItem", "Query", "Scan", "TransactGetItems"] {
            assert!(!is_write(read), "{read}");
        }
        for put in [
            "PutObject",
            "CopyObject",
            "ListObjectsV2",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
        ] {
            assert!(is_s3_put_class(put), "{put}");
        }
        for get in ["GetObject", "HeadObject", "DeleteObject"] {
            assert!(!is_s3_put_class(get), "{get}");
        }
    }
}
