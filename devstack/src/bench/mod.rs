//! `make bench`'s report, every figure beside its goal:
//! 1. ingress compute per request, read from criterion's estimates, beside twilio-node (the
//!    official helper) timed on the same inputs;
//! 2. cold starts of every function binary against a stand-in Runtime API, as ratios to an
//!    empty `lambda_runtime` function, and the size of every arm64 bootstrap;
//! 3. AWS calls per event, from the functions' own EMF lines (`voicehooks::aws::CallMetrics`)
//!    during an in-order run, what they cost per million calls beside the peer design
//!    (`cost`), and the capacity they leave at 10 to 1,000 calls/s (`capacity`);
//! 4. end to end on the local stack: ack latency at rising call rates, where the time goes,
//!    events per second through the workers, and the capacity model's inputs under load.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use voicectl::simulate::{self, SimulateOptions};
use voicehooks::aws::CALL_LATENCY_METRIC;
use voicehooks::metrics::name;

mod capacity;
mod cost;

use crate::coldstart;
use crate::emf::Emf;
use crate::functions::FunctionSpec;
use crate::local_stack::{self, LocalStack, StackOptions};
use crate::workspace::Workspace;

/// The twilio-node release the peer figures come from (pinned: figures must be comparable
/// from run to run).
pub const TWILIO_NODE: &str = "6.2.0";

/// The report's parts, which `--only` picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Ingress,
    ColdStarts,
    /// AWS calls per event, the cost per million calls beside the peer's, and the capacity
    /// table built from them.
    Cost,
    EndToEnd,
}

pub struct BenchOptions {
    /// The parts to run (all of them by default).
    pub parts: Vec<Part>,
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
    let runs = |part| options.parts.is_empty() || options.parts.contains(&part);
    if runs(Part::Ingress) {
        ingress(&workspace)?;
    }
    if !(runs(Part::ColdStarts) || runs(Part::Cost) || runs(Part::EndToEnd)) {
        return Ok(());
    }
    let stack = LocalStack::start(StackOptions {
        label: "bench".into(),
        release: true,
        ..StackOptions::default()
    })
    .await?;
    if runs(Part::ColdStarts) {
        cold_starts(&workspace, &stack, options.cold_starts).await?;
    }
    let model = if runs(Part::Cost) {
        Some(aws_calls(&stack, options.calls).await?)
    } else {
        None
    };
    if runs(Part::EndToEnd) {
        end_to_end(&stack, &options, model.as_ref()).await?;
    }
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

/// The floor the functions' cold starts are read against: `devstack/empty-function`, the
/// Lambda runtime and nothing else, built with the same release profile.
const EMPTY_FUNCTION: &str = "empty-function";
/// Goal: ready within this many times the empty function's ready.
const READY_GOAL_RATIO: f64 = 1.5;

/// Cold starts of one binary, and their medians.
#[derive(Default)]
struct ColdStarts(Vec<coldstart::ColdStart>);

impl ColdStarts {
    fn median(&self, f: fn(&coldstart::ColdStart) -> Duration) -> Duration {
        let mut v: Vec<Duration> = self.0.iter().map(f).collect();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    fn ready(&self) -> Duration {
        self.median(|c| c.ready)
    }

    fn answered(&self) -> Duration {
        self.median(|c| c.first_response)
    }

    fn errors(&self) -> usize {
        self.0.iter().filter(|c| !c.ok).count()
    }
}

async fn cold_starts(workspace: &Workspace, stack: &LocalStack, runs: usize) -> anyhow::Result<()> {
    println!(
        "\n2. Cold start: release binary exec'd against a stand-in Runtime API, median of {runs} \
         (this machine, x86_64), as a ratio to the empty function (goal: ready within \
         {READY_GOAL_RATIO}x), and the arm64 bootstrap (goal < 6 MB)"
    );
    let empty = FunctionSpec {
        name: EMPTY_FUNCTION.into(),
        env: Vec::new(),
        instances: 1,
        concurrency: 1,
        timeout: Duration::from_secs(3),
        memory_mb: 128,
    };
    let mut functions = vec![(empty, b"{}".to_vec())];
    for (function, event) in FIRST_EVENTS {
        let spec = stack
            .functions
            .specs()
            .iter()
            .find(|s| s.name == function)
            .with_context(|| format!("no function {function}"))?;
        functions.push((spec.clone(), std::fs::read(workspace.events().join(event))?));
    }
    // Round by round, every binary once per round: this machine's noise (other processes,
    // the page cache) then falls on the floor and the functions alike.
    let mut measured: Vec<ColdStarts> = functions.iter().map(|_| ColdStarts::default()).collect();
    for run in 0..runs {
        for ((spec, event), samples) in functions.iter().zip(&mut measured) {
            let binary = workspace.release_binary(&spec.name);
            anyhow::ensure!(
                binary.exists(),
                "{}: run `cargo build --release` first",
                binary.display()
            );
            let log = stack
                .log_dir
                .join(format!("coldstart-{}-{run}.log", spec.name));
            samples
                .0
                .push(coldstart::measure(&binary, spec, event.clone(), &log).await?);
        }
    }
    let floor = &measured[0];
    println!(
        "   {EMPTY_FUNCTION} (lambda_runtime and tokio, nothing else; same profile, same stand-in): \
         exec→ready {}, exec→1st answer {}",
        millis(floor.ready()),
        millis(floor.answered())
    );
    println!(
        "   {:<22} {:>11} {:>8} {:>6} {:>16} {:>8} {:>12} {:>6}",
        "function",
        "exec→ready",
        "x empty",
        "goal",
        "exec→1st answer",
        "x empty",
        "arm64 size",
        "goal"
    );
    let ratio = |d: Duration, floor: Duration| d.as_secs_f64() / floor.as_secs_f64();
    for ((spec, _), samples) in functions.iter().zip(&measured).skip(1) {
        let size = std::fs::metadata(workspace.lambda_bootstrap(&spec.name)).map(|m| m.len());
        let ready = ratio(samples.ready(), floor.ready());
        println!(
            "   {:<22} {:>11} {ready:>7.2}x {:>6} {:>16} {:>7.2}x {:>12} {:>6}{}",
            spec.name,
            millis(samples.ready()),
            verdict(ready <= READY_GOAL_RATIO),
            millis(samples.answered()),
            ratio(samples.answered(), floor.answered()),
            size.as_ref().map_or("not built".into(), |s| format!(
                "{:.2} MB",
                *s as f64 / 1048576.0
            )),
            size.as_ref().map_or("", |s| verdict(*s < SIZE_GOAL_BYTES)),
            match samples.errors() {
                0 => String::new(),
                n => format!("  ({n} answered with an error)"),
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

/// Part 3 of the report, AWS calls per event and what they cost: `calls` calls played in
/// order, once each, and every request the functions' SDK interceptor counted meanwhile.
async fn aws_calls(stack: &LocalStack, calls: usize) -> anyhow::Result<cost::Traffic> {
    stack.functions.take_durations();
    let (played, emf) = play_in_order(stack, calls).await?;
    let durations = stack.functions.take_durations();
    print_calls_per_event(&emf, calls);
    let traffic = cost::traffic(&emf, played, &durations, |f| memory_mb(stack, f));
    cost::print(&emf, played, &traffic);
    capacity::print(&traffic, &stack.deployment);
    Ok(traffic)
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
    println!(
        "\n3. AWS calls per event, counted by the SDK interceptor in every function (EMF \
         `Aws.<Service>.<Operation>`), during {calls} calls played in order, once each"
    );
    print_sends(emf);
    print_status_requests(emf);
    print_media_requests(emf);
    print_secret_reads(emf);
}

/// One figure beside its goal; a verdict where the goal is a test.
fn row(what: &str, value: f64, goal: &str, ok: Option<bool>) {
    println!(
        "   {what:<58} {value:>8.3} {goal:>18} {}",
        ok.map_or("", verdict)
    )
}

/// The webhooks' sends: one per accepted callback, at most one per voice request.
fn print_sends(emf: &Emf) {
    let callbacks = || {
        WEBHOOKS
            .iter()
            .filter(|f| **f != local_stack::WEBHOOK_VOICE)
    };
    let callbacks_accepted: f64 = callbacks().map(|f| emf.sum(f, name::ACCEPTED)).sum();
    let callback_sends: f64 = callbacks()
        .map(|f| emf.calls(f, "SQS", |o| o == "SendMessage"))
        .sum();
    let voice_requests = emf.invocations(local_stack::WEBHOOK_VOICE);
    let voice_sends = emf.calls(local_stack::WEBHOOK_VOICE, "SQS", |o| o == "SendMessage");
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
}

/// The status worker's DynamoDB requests: call events apart from conference room events.
fn print_status_requests(emf: &Emf) {
    let worker = local_stack::STATUS_WORKER;
    let applied = emf.sum(worker, name::EVENTS_APPLIED);
    // SQS does not keep order across the workers' batches, so a few events arrive late even
    // here; a late or duplicate event costs its failed conditional write and one more.
    let out_of_order = emf.sum(worker, name::EVENTS_DUPLICATE) + emf.sum(worker, name::EVENTS_LATE);
    let status_events = applied + out_of_order;
    // A room's event is its own item (PutItem), a query of the room's events, the room
    // (PutItem) and, for a join or leave, the call's link: apart from the call events.
    let rooms = emf.sum(worker, name::CONFERENCE_EVENTS);
    let room_writes =
        emf.calls(worker, "DynamoDB", |o| o == "PutItem") + emf.sum(worker, name::CONFERENCE_LINKS);
    let room_reads = emf.calls(worker, "DynamoDB", |o| o == "Query");
    let status_writes = emf.calls(worker, "DynamoDB", is_write) - room_writes;
    // An event that finds the call's timeline full costs a second write (without its entry).
    let overflow = emf.sum(worker, name::TIMELINE_OVERFLOW);
    let in_order_writes = per(status_writes - 2.0 * out_of_order - overflow, applied);
    let status_reads = emf.calls(worker, "DynamoDB", |o| !is_write(o)) - room_reads;
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
        &format!("DynamoDB requests per conference room event ({rooms})"),
        per(room_writes + room_reads, rooms),
        "",
        None,
    );
    row(
        "DynamoDB reads per status event",
        per(status_reads, status_events),
        "0",
        Some(status_reads == 0.0),
    );
}

/// S3 requests per recording archived (by operation) and per transcript stored.
fn print_media_requests(emf: &Emf) {
    let recordings = emf.sum(local_stack::RECORDING_WORKER, name::RECORDINGS_ARCHIVED);
    let recording_s3 = emf.calls(local_stack::RECORDING_WORKER, "S3", |_| true);
    let transcripts = emf.sum(
        local_stack::TRANSCRIPT_WORKER,
        name::TRANSCRIPTIONS_COMPLETED,
    );
    let transcript_s3 = emf.calls(local_stack::TRANSCRIPT_WORKER, "S3", |_| true);
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
}

/// Each instance that reads the secret reads it once and keeps it.
fn print_secret_reads(emf: &Emf) {
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

// ---------------------------------------------------------------------------------------
// 4. End to end

async fn end_to_end(
    stack: &LocalStack,
    options: &BenchOptions,
    model: Option<&cost::Traffic>,
) -> anyhow::Result<()> {
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
    let mut loads = Vec::new();
    for &rate in &options.rates {
        stack.functions.take_durations();
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
        let durations = stack.functions.take_durations();
        loads.push((
            rate,
            report.latency_ms(99.0),
            cost::traffic(&emf, calls, &durations, |f| memory_mb(stack, f)),
        ));
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
    if let Some(model) = model {
        check_model_inputs(model, &loads);
    }
    Ok(())
}

/// An ack's p99 under this is a rate the local stack sustains (Twilio's own limit is 15 s).
const SUSTAINED_P99_MS: f64 = 1_000.0;

/// The capacity model's per-event inputs, from the in-order run, beside the same figures at
/// the highest rate the local stack sustained.
fn check_model_inputs(model: &cost::Traffic, loads: &[(f64, f64, cost::Traffic)]) {
    let Some((rate, p99, load)) = loads
        .iter()
        .filter(|(_, p99, _)| *p99 < SUSTAINED_P99_MS)
        .max_by(|a, b| a.0.total_cmp(&b.0))
    else {
        println!(
            "   No rate was sustained (ack p99 under {SUSTAINED_P99_MS} ms): the model's inputs are unchecked."
        );
        return;
    };
    println!(
        "\n   The capacity model's per-event inputs, checked under load: the in-order run beside \
         {rate} calls/s, the highest rate here with an ack p99 under {SUSTAINED_P99_MS:.0} ms \
         ({p99:.0} ms; with Twilio's duplicates and reordering)"
    );
    println!(
        "   {:<44} {:>10} {:>14} {:>8}",
        "input",
        "model",
        format!("{rate} calls/s"),
        "change"
    );
    for ((what, modelled), (_, measured)) in model
        .per_event_inputs()
        .into_iter()
        .zip(load.per_event_inputs())
    {
        println!(
            "   {what:<44} {modelled:>10.2} {measured:>14.2} {:>7.0}%",
            (measured / modelled - 1.0) * 100.0
        );
    }
}

fn memory_mb(stack: &LocalStack, function: &str) -> i32 {
    stack
        .functions
        .specs()
        .iter()
        .find(|s| s.name == function)
        .map_or(128, |s| s.memory_mb)
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
