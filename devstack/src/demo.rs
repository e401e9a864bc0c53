//! `make demo`: a few hundred calls through the local stack, checked against ground truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use voicectl::simulate::{
    self, Requested, SimulateOptions, SimulatedCall, SimulatedLeg, SimulationReport,
};
use voicehooks::calls::{CallRecord, DynamoCallStore};
use voicehooks::flows::Flows;
use voicehooks::recording::{DynamoRecordingStore, RecordingRecord, RecordingStore};
use voicehooks::twilio::CallStatus;

use crate::emf::Emf;
use crate::local_stack::{LocalStack, StackOptions};

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
    pub recordings: RecordingsCheck,
    pub rooms: crate::rooms::RoomsCheck,
    /// Per call, in `report.calls` order: each leg's stored record, in `legs` order.
    pub records: Vec<Vec<Option<CallRecord>>>,
    /// Per call: the flow the routes send it to (what `call.started` should have stored).
    pub expected_flows: Vec<String>,
    /// Per call: whether every leg matched the ground truth.
    pub verified: Vec<bool>,
    pub mismatches: Vec<String>,
    pub drain_time: Duration,
    pub spill: SpillFigures,
}

/// What went through the spill.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpillFigures {
    /// Events the webhooks spilled (a second spill of one event overwrites its object).
    pub spilled: u64,
    /// Events the drainer put back on their queues.
    pub drained: u64,
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

/// What the recordings the calls made came to.
#[derive(Debug, Default)]
pub struct RecordingsCheck {
    /// Recording callbacks the calls made (each a recording Twilio holds).
    pub expected: usize,
    pub archived: usize,
    pub bytes: u64,
    /// Archives whose size and SHA-256 equal the source media's, with the object in S3
    /// under SSE-KMS.
    pub verified: usize,
    pub not_ready_at_first: usize,
    pub deleted_from_twilio: usize,
    pub transcripts: usize,
    pub dual_channel_transcripts: usize,
    pub twilio_transcriptions: usize,
    pub twilio_transcriptions_expected: usize,
    pub mismatches: Vec<String>,
}

/// Checks every recording the calls made against the stand-in's media: archived once,
/// byte-exact, encrypted, Twilio's copy deleted, transcribed; and every Twilio transcription
/// stored.
async fn check_recordings(
    stack: &LocalStack,
    report: &SimulationReport,
) -> anyhow::Result<RecordingsCheck> {
    let store = DynamoRecordingStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let s3 = voicehooks::aws::s3_client(&stack.sdk);
    let mut check = RecordingsCheck::default();
    for call in &report.calls {
        for requested in &call.conversation.requested {
            let (Some(sid), Some(call_sid)) = (
                requested.params.get("RecordingSid"),
                requested.params.get("CallSid"),
            ) else {
                continue;
            };
            let stored = store.get(call_sid, sid).await?.unwrap_or_default();
            if requested.is_for("/twilio/transcription") {
                check.twilio_transcription(sid, requested, &stored);
            } else {
                check.recording(stack, &s3, sid, &stored).await;
            }
        }
    }
    Ok(check)
}

impl RecordingsCheck {
    fn problem(&mut self, sid: &str, what: String) {
        self.mismatches.push(format!("{sid}: {what}"));
    }

    /// Twilio's transcription is stored as its callback gave it.
    fn twilio_transcription(&mut self, sid: &str, requested: &Requested, stored: &RecordingRecord) {
        self.twilio_transcriptions_expected += 1;
        let text = requested.params.get("TranscriptionText");
        if stored.twilio_transcription_text.as_deref() == text {
            self.twilio_transcriptions += 1;
        } else {
            self.problem(
                sid,
                format!(
                    "Twilio transcription {:?}, expected {text:?}",
                    stored.twilio_transcription_text
                ),
            );
        }
    }

    /// One recording: archived byte-exact and encrypted, Twilio's copy gone, transcribed.
    async fn recording(
        &mut self,
        stack: &LocalStack,
        s3: &aws_sdk_s3::Client,
        sid: &str,
        stored: &RecordingRecord,
    ) {
        self.expected += 1;
        let Some((bytes, sha256)) = stack.media.expected(sid) else {
            self.problem(sid, "the stand-in holds no media".into());
            return;
        };
        if stack.media.requests(sid) > 2 {
            self.not_ready_at_first += 1;
        }
        if !stored.is_archived() {
            self.problem(sid, format!("not archived (state {:?})", stored.state));
            return;
        }
        self.archived += 1;
        self.bytes += stored.bytes.unwrap_or_default();
        self.archive(stack, s3, sid, stored, (bytes, &sha256)).await;
        if stored.deleted_from_twilio && stack.media.deleted(sid) {
            self.deleted_from_twilio += 1;
        } else {
            self.problem(sid, "Twilio's copy not deleted".into());
        }
        self.transcript(sid, stored);
    }

    /// The archive's size and SHA-256 are the source's, and S3 holds it under SSE-KMS.
    async fn archive(
        &mut self,
        stack: &LocalStack,
        s3: &aws_sdk_s3::Client,
        sid: &str,
        stored: &RecordingRecord,
        (bytes, sha256): (u64, &str),
    ) {
        let key = stored.s3_key.clone().unwrap_or_default();
        let head = s3
            .head_object()
            .bucket(&stack.resources.recordings_bucket)
            .key(&key)
            .send()
            .await;
        let object = head.as_ref().ok().map(|h| {
            (
                h.content_length.unwrap_or_default() as u64,
                h.server_side_encryption
                    .as_ref()
                    .map(|e| e.as_str().to_owned()),
            )
        });
        if stored.bytes == Some(bytes)
            && stored.sha256.as_deref() == Some(sha256)
            && object == Some((bytes, Some("aws:kms".to_owned())))
        {
            self.verified += 1;
        } else {
            self.problem(
                sid,
                format!(
                    "archive {:?} bytes sha256 {:?}, S3 object {object:?}; source {bytes} bytes sha256 {sha256}",
                    stored.bytes, stored.sha256
                ),
            );
        }
    }

    /// The transcript names its recording, and a two-channel one is split by role.
    fn transcript(&mut self, sid: &str, stored: &RecordingRecord) {
        match stored.transcription_status.as_deref() {
            Some("COMPLETED")
                if stored
                    .transcript_text
                    .as_deref()
                    .is_some_and(|t| t.contains(sid)) =>
            {
                self.transcripts += 1;
                let roles: Vec<&str> = stored
                    .transcript_channels
                    .iter()
                    .map(|(r, _)| r.as_str())
                    .collect();
                if roles == ["agent", "caller"] {
                    self.dual_channel_transcripts += 1;
                } else if stored.channels == Some(2) {
                    self.problem(sid, format!("dual-channel transcript split as {roles:?}"));
                }
            }
            other => self.problem(
                sid,
                format!("transcription {other:?}, text {:?}", stored.transcript_text),
            ),
        }
    }
}

impl DemoOptions {
    /// What the stand-in plays on `stack`.
    pub fn simulate_options(&self, stack: &LocalStack) -> SimulateOptions {
        SimulateOptions {
            calls: self.calls,
            seed: self.seed,
            concurrency: self.concurrency,
            duplicate_rate: self.duplicate_rate,
            reorder_rate: self.reorder_rate,
            routes: stack.routes(),
            softphone: Some(stack.softphone_sign_in()),
            ..SimulateOptions::default()
        }
    }
}

/// Plays the calls through a running stack and checks every leg against the ground truth.
pub async fn play(stack: &LocalStack, options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let (report, drain_time) = drive(stack, &options.simulate_options(stack)).await?;
    check(stack, report, drain_time).await
}

/// Plays the calls and waits until the workers have drained every queue; the report and
/// how long the draining took after the last acknowledgement.
pub async fn drive(
    stack: &LocalStack,
    options: &SimulateOptions,
) -> anyhow::Result<(SimulationReport, Duration)> {
    let bar = voicectl::progress_bar(0, false);
    bar.set_message("calls played");
    let report = simulate::run_with_media(options, Some(&stack.media), &bar).await;
    bar.finish_and_clear();
    let report = report?;
    let drain_started = Instant::now();
    stack.wait_until_drained(Duration::from_secs(900)).await?;
    Ok((report, drain_started.elapsed()))
}

/// Checks what the stack stored against the stand-in's ground truth: every leg's final
/// status and timeline, every call's flow, every recording and transcript.
pub async fn check(
    stack: &LocalStack,
    report: SimulationReport,
    drain_time: Duration,
) -> anyhow::Result<DemoOutcome> {
    let flows = Flows::built_in().map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let records = read_records(&store, &report).await?;
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
        .map(|((call, legs), expected)| call_mismatches(call, legs, expected))
        .collect();
    let recordings = check_recordings(stack, &report).await?;
    let rooms = crate::rooms::check(&store, &report).await?;
    let verified = per_call.iter().map(Vec::is_empty).collect();
    let mut mismatches: Vec<String> = per_call.into_iter().flatten().collect();
    mismatches.extend(recordings.mismatches.iter().cloned());
    mismatches.extend(rooms.mismatches.iter().cloned());
    mismatches.extend(delivery_mismatches(&report));
    // The spill is empty (the drain waited for it); what went through it, from the
    // functions' own metrics. Duplicate deliveries spilled at once write one object, so
    // fewer may be drained than were spilled.
    let (emf, _) = Emf::read(&stack.log_dir, &BTreeMap::new())?;
    let spill = SpillFigures {
        spilled: emf.total(voicehooks::metrics::name::EVENTS_SPILLED) as u64,
        drained: emf.total(voicehooks::metrics::name::SPILL_DRAINED) as u64,
    };
    Ok(DemoOutcome {
        report,
        recordings,
        rooms,
        records,
        expected_flows,
        verified,
        mismatches,
        drain_time,
        spill,
    })
}

/// Per call, each leg's stored record, in `legs` order.
async fn read_records(
    store: &DynamoCallStore,
    report: &SimulationReport,
) -> anyhow::Result<Vec<Vec<Option<CallRecord>>>> {
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
    Ok(records)
}

/// Where a call's legs differ from what was played, and its flow from the one it was routed to.
fn call_mismatches(
    call: &SimulatedCall,
    legs: &[Option<CallRecord>],
    expected_flow: &str,
) -> Vec<String> {
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
    if stored != Some(expected_flow) {
        problems.push(format!(
            "{}: flow {stored:?}, expected {expected_flow}",
            call.call_sid()
        ));
    }
    problems
}

/// What the run itself lost: callbacks Twilio gave up on, callers who heard an application
/// error, softphones that could not sign in.
fn delivery_mismatches(report: &SimulationReport) -> impl Iterator<Item = String> + '_ {
    let gave_up = report
        .gave_up
        .iter()
        .map(|u| format!("Twilio gave up: {u}"));
    let voice = report
        .voice_errors
        .iter()
        .map(|e| format!("voice webhook: {e}"));
    let sign_in = report
        .sign_in_failures
        .iter()
        .map(|e| format!("softphone sign-in: {e}"));
    gave_up.chain(voice).chain(sign_in)
}

pub async fn run(options: DemoOptions) -> anyhow::Result<bool> {
    println!(
        "voicehooks demo: {} calls. Twilio stand-in → webhook-voice (TwiML) → follows the flow → \
         status callbacks of every leg → webhook-status → SQS → status-worker → DynamoDB; \
         recordings → webhook-recording → recording-worker → S3 + Transcribe → transcript-worker (local)",
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
    let log_dir = stack.log_dir.clone();
    let wiring = wire_numbers(&stack).await;
    if let Ok(wiring) = &wiring {
        println!("\n  $ voicectl numbers check");
        for line in voicectl::numbers::render(&wiring.before).lines() {
            println!("  {line}");
        }
        println!("  $ voicectl numbers apply (then check again)");
        for line in voicectl::numbers::render_changes(wiring.before.drifted(), false).lines() {
            println!("  {line}");
        }
        println!();
    }
    let outcome = play(&stack, &options).await;
    let repairs = repair_gave_up(&stack, options.seed).await;
    stack.stop().await;
    let mut outcome = outcome?;
    let wiring = wiring?;
    let repairs = repairs?;
    outcome
        .mismatches
        .extend(repairs.unrepaired.iter().cloned());
    let audit = crate::audit::audit_logs(&log_dir, crate::audit::LOCAL_SECRETS)?;
    outcome.mismatches.extend(audit.findings());
    if !wiring.after.in_sync() {
        outcome
            .mismatches
            .push("numbers still drifted after `numbers apply`".into());
    }
    print_figures(&outcome);
    println!("  {}", wiring.summary());
    println!("  {}", repairs.summary());
    println!("  logs audited             {}", audit.summary());
    print_mismatches(&outcome.mismatches);
    Ok(outcome.mismatches.is_empty())
}

/// Calls whose callbacks Twilio gave up on, and what `voicectl reconcile` made of them.
pub struct Repairs {
    pub lost: crate::reconcile::GaveUp,
    pub report: voicehooks::reconcile::ReconcileReport,
    pub unrepaired: Vec<String>,
    pub took: Duration,
}

impl Repairs {
    pub fn summary(&self) -> String {
        format!(
            "reconcile (Twilio REST)  {} calls and {} recordings listed; {} calls whose final callback Twilio gave up on got their status (`reconciled`), {} lost recordings archived; {} unrepaired, in {:.1} s",
            self.report.calls_listed,
            self.report.recordings_listed,
            self.report.statuses_repaired.len(),
            self.report.recordings_queued.len(),
            self.unrepaired.len(),
            self.took.as_secs_f64()
        )
    }
}

/// After the calls: a few more whose callbacks Twilio gave up on, then `voicectl reconcile
/// --since 2h`, and a check that every one is repaired and nothing else was touched.
pub async fn repair_gave_up(stack: &LocalStack, seed: u64) -> anyhow::Result<Repairs> {
    let lost = crate::reconcile::place(stack, 6, seed).await?;
    stack.wait_until_drained(Duration::from_secs(120)).await?;
    let started = Instant::now();
    let report = crate::reconcile::run(stack, Duration::from_secs(2 * 3600)).await?;
    stack.wait_until_drained(Duration::from_secs(300)).await?;
    let mut unrepaired = crate::reconcile::unrepaired(stack, &lost).await?;
    if report.statuses_repaired.len() != lost.calls.len() {
        unrepaired.push(format!(
            "reconcile repaired {} statuses; {} were lost (it must touch nothing else)",
            report.statuses_repaired.len(),
            lost.calls.len()
        ));
    }
    if report.recordings_queued.len() != lost.recordings.len() {
        unrepaired.push(format!(
            "reconcile queued {} recordings; {} were lost",
            report.recordings_queued.len(),
            lost.recordings.len()
        ));
    }
    Ok(Repairs {
        lost,
        report,
        unrepaired,
        took: started.elapsed(),
    })
}

/// `voicectl numbers` on the stand-in account, as an operator moving to us runs it first:
/// check, apply, check again.
pub struct Wiring {
    pub before: voicectl::numbers::NumbersReport,
    pub changed: usize,
    pub after: voicectl::numbers::NumbersReport,
}

impl Wiring {
    pub fn summary(&self) -> String {
        let problems: usize = self.before.drifted().map(|w| w.drift.len()).sum();
        format!(
            "numbers (Twilio REST)    check: {} of {} drifted ({problems} settings); apply: {} updated; check again: {} drifted",
            self.before.drifted().count(),
            self.before.wired.len(),
            self.changed,
            self.after.drifted().count()
        )
    }
}

pub async fn wire_numbers(stack: &LocalStack) -> anyhow::Result<Wiring> {
    use voicectl::numbers;
    use voicehooks::config::local;
    let twilio = stack.twilio_rest();
    let expected = numbers::Expected::for_base(local::PUBLIC_BASE_URL);
    let app = Some(local::TWIML_APP_SID);
    let before = numbers::check(&twilio, local::ACCOUNT_SID, &expected, app).await?;
    let changed = numbers::apply(&twilio, &before, &[]).await?.len();
    let after = numbers::check(&twilio, local::ACCOUNT_SID, &expected, app).await?;
    Ok(Wiring {
        before,
        changed,
        after,
    })
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

pub fn print_outcome(outcome: &DemoOutcome) {
    print_figures(outcome);
    print_mismatches(&outcome.mismatches);
}

/// The total, and the first 20 mismatches.
pub fn print_mismatches(mismatches: &[String]) {
    println!("  mismatches               {}", mismatches.len());
    for mismatch in mismatches.iter().take(20) {
        println!("  MISMATCH {mismatch}");
    }
}

/// What the run did, per flow and in total, and one reordered leg's timeline.
pub fn print_figures(outcome: &DemoOutcome) {
    println!();
    print_flow_table(outcome);
    println!();
    print_deliveries(outcome);
    print_recordings_and_rooms(outcome);
    let report = &outcome.report;
    if !report.unrouted.is_empty() {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for url in &report.unrouted {
            *kinds
                .entry(url.rsplit('/').next().unwrap_or(url))
                .or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("  asked for, no route      {}", kinds.join(", "));
    }
    println!(
        "  queue drained            {:.1} s after the last acknowledgement",
        outcome.drain_time.as_secs_f64()
    );

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
}

/// Per flow: calls, voice requests, legs dialled and answered, recordings, calls verified.
fn print_flow_table(outcome: &DemoOutcome) {
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
            .filter(|r| r.is_for("/twilio/recording"))
            .count();
        row.verified += usize::from(*verified);
    }
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
}

/// What Twilio delivered and how it was taken: legs, callbacks, acks, spills, TwiML,
/// sign-ins, latencies, duplicates and late events.
fn print_deliveries(outcome: &DemoOutcome) {
    let report = &outcome.report;
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
        "  acknowledged (2xx)       {} in {:.1} s; Twilio's retries (as the URLs' overrides allow): {}; gave up on {}",
        report.acknowledged,
        report.elapsed.as_secs_f64(),
        report.retries_summary(),
        report.gave_up.len()
    );
    println!(
        "  spill                    {} events spilled (SQS did not take them in time), {} drained back onto their queues",
        outcome.spill.spilled, outcome.spill.drained
    );
    println!(
        "  TwiML answers            {}, p50 {:.1} ms, p99 {:.1} ms, {} fallbacks, {} application errors",
        report.voice_latency_us.len(),
        report.voice_latency_ms(50.0),
        report.voice_latency_ms(99.0),
        report.voice_fallbacks.len(),
        report.voice_errors.len()
    );
    println!(
        "  softphone sign-ins       {} Access Tokens minted (JWT authorizer → softphone-token) and accepted as Twilio checks them; {} refused",
        report.softphone_sign_ins,
        report.sign_in_failures.len()
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
}

/// Recordings archived and deleted from Twilio, transcripts, conference rooms.
fn print_recordings_and_rooms(outcome: &DemoOutcome) {
    let r = &outcome.recordings;
    println!(
        "  recordings archived      {}/{} ({:.1} MB), {} byte-exact (size + SHA-256 vs the source, SSE-KMS), {} not ready at first",
        r.archived,
        r.expected,
        r.bytes as f64 / 1e6,
        r.verified,
        r.not_ready_at_first
    );
    println!(
        "  Twilio copies deleted    {} (after the S3 copy was verified)",
        r.deleted_from_twilio
    );
    println!(
        "  transcripts              {} Amazon Transcribe ({} split caller/agent), {}/{} Twilio <Record transcribe>",
        r.transcripts,
        r.dual_channel_transcripts,
        r.twilio_transcriptions,
        r.twilio_transcriptions_expected
    );
    let rooms = &outcome.rooms;
    println!(
        "  conference rooms         {}/{} stored as their {} events tell ({} delivered out of order): each participant's join, leave and reason",
        rooms.verified, rooms.rooms, rooms.events, rooms.delivered_out_of_order
    );
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
