//! `make chaos`: the demo with the fault mix turned up, checked against the same ground
//! truth. The stand-in duplicates and reorders callbacks and retries every 5xx; AWS (the
//! [`FaultProxy`] in front of the emulator) refuses writes, loses answers after applying
//! them and refuses a share of the webhooks' enqueues; worker instances are killed with
//! SIGKILL while they hold a batch; a few calls are poisoned until "the fix is deployed",
//! so their events rest in the DLQs and are then redriven with voicectl's redrive. Every
//! call must end exactly as the stand-in played it: nothing lost, doubled or applied out of
//! order, each recording stored once with the right checksum, each transcription job
//! started once, and nothing secret in the logs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voicectl::dlq::{self, RedriveOptions};
use voicectl::simulate::{self, SimulateOptions, SimulationReport};
use voicehooks::config::local;
use voicehooks::stack_names::WorkQueue;

use crate::audit::{LogAudit, audit_logs};
use crate::demo::{self, DemoOutcome};
use crate::emf::Emf;
use crate::faults::{Fault, FaultPlan, FaultProxy, Outage, Slowdown};
use crate::local_stack::{LocalStack, RECORDING_WORKER, STATUS_WORKER, StackOptions};

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub calls: usize,
    pub seed: u64,
    pub concurrency: usize,
    /// Calls started per second at most. The emulator's SQS scans a whole queue on every
    /// receive, so a backlog slows it more than linearly: a long run is paced to what the
    /// local workers drain, as a real stack's traffic would be.
    pub rate: Option<f64>,
    /// Worker instances killed (SIGKILL) while their poller has a batch in flight.
    pub kills: usize,
    /// Calls whose DynamoDB writes fail until the fix: their events end in the DLQs.
    pub poisoned_calls: usize,
    /// Services down for a while during the calls (SQS, Secrets Manager).
    pub outages: Vec<Outage>,
    /// Services slow for a while (DynamoDB): batches run into their deadlines.
    pub slowdowns: Vec<Slowdown>,
    /// Runs the functions' release builds, as Lambda runs them (`make chaos`): a thousand
    /// calls of debug builds' SDK signing and serialisation take the CPU the emulator needs.
    pub release: bool,
}

/// How long a token stays cached in the chaos run: shorter than the Secrets Manager outages
/// (a minute; half of one in tests/chaos.rs), so an outage finds the webhooks past their TTL
/// (serving the last good token) rather than still inside it; not so short that a few dozen
/// instances' re-reads load the emulator (300 s deployed).
pub const CHAOS_SECRET_TTL: Duration = Duration::from_secs(20);

impl ChaosOptions {
    /// `make chaos`'s outages: SQS down for a minute early in the run, then Secrets
    /// Manager for a minute.
    pub fn standard_outages() -> Vec<Outage> {
        vec![
            Outage {
                service: "sqs",
                from: Duration::from_secs(40),
                lasts: Duration::from_secs(60),
            },
            Outage {
                service: "secretsmanager",
                from: Duration::from_secs(130),
                lasts: Duration::from_secs(60),
            },
        ]
    }

    /// `make chaos`'s slow spell: DynamoDB answering 2 s late for half a minute, just as the
    /// spill of SQS's outage is drained back onto the queues (a throttled table under a
    /// burst), so worker batches meet their deadline with messages not yet started.
    pub fn standard_slowdowns() -> Vec<Slowdown> {
        vec![Slowdown {
            service: "dynamodb",
            from: Duration::from_secs(100),
            lasts: Duration::from_secs(30),
            delay: Duration::from_secs(2),
            matching: None,
        }]
    }
}

impl ChaosOptions {
    /// The stand-in's side of the fault mix.
    pub fn simulate_options(&self, routes: Vec<(String, String)>) -> SimulateOptions {
        SimulateOptions {
            calls: self.calls,
            seed: self.seed,
            concurrency: self.concurrency,
            rate: self.rate,
            duplicate_rate: 0.2,
            reorder_rate: 0.3,
            media_not_ready_rate: 0.3,
            media_not_ready_tries: 2,
            // Short recordings: a thousand calls' worth stays small in the emulator.
            max_media_secs: 8,
            routes,
            ..SimulateOptions::default()
        }
    }

    /// AWS's side: what the proxy injects, and the calls it poisons.
    pub fn fault_plan(&self, poisoned: Vec<String>) -> FaultPlan {
        FaultPlan {
            seed: self.seed,
            enqueue_failure_rate: 0.05,
            sqs_lost_response_rate: 0.02,
            dynamodb_error_rate: 0.03,
            dynamodb_lost_response_rate: 0.02,
            s3_error_rate: 0.03,
            transcribe_lost_response_rate: 0.05,
            poisoned,
            // A fifth of the spills of refused enqueues are refused too: 503s for Twilio,
            // retried as the URLs' overrides allow. (Not during an outage, when the spill is
            // what keeps the promise: S3 failing with SQS or Secrets Manager is not the day
            // this run plays.)
            spill_failure_rate: 0.2,
            outages: self.outages.clone(),
            slowdowns: self.slowdowns.clone(),
        }
    }

    /// The CallSids to poison, spread over the run and fixed by the seed.
    pub fn poisoned(&self) -> Vec<String> {
        let scripts = simulate::plan(&self.simulate_options(Vec::new()));
        let step = (scripts.len() / self.poisoned_calls.max(1)).max(1);
        scripts
            .iter()
            .step_by(step)
            .take(self.poisoned_calls)
            .map(|s| s.call_sid.clone())
            .collect()
    }
}

/// The workers' and webhooks' metrics over a run (their EMF lines).
#[derive(Debug, Clone, Default)]
pub struct WorkerFigures {
    /// `MessagesHandedBack`: never started before a deadline, sent again, no receive spent.
    pub handed_back: u64,
    /// `MessagesCutOff`: still running at a deadline, retried (a receive spent).
    pub cut_off: u64,
    /// `QueueBreakerOpened` / `QueueBreakerClosed`, over every webhook instance.
    pub breaker_opened: u64,
    pub breaker_closed: u64,
    /// `EventsSpilledBreakerOpen`: spilled without asking SQS.
    pub breaker_spills: u64,
}

impl WorkerFigures {
    pub fn of(emf: &Emf) -> Self {
        use voicehooks::metrics::name;
        let total = |metric| emf.total(metric) as u64;
        Self {
            handed_back: total(name::HANDED_BACK),
            cut_off: total(name::CUT_OFF),
            breaker_opened: total(name::BREAKER_OPENED),
            breaker_closed: total(name::BREAKER_CLOSED),
            breaker_spills: total(name::BREAKER_SPILLS),
        }
    }
}

/// A worker instance killed mid-batch.
#[derive(Debug, Clone)]
pub struct Kill {
    pub function: &'static str,
    pub instance: usize,
    /// Batches its poller had in flight at that moment.
    pub batches_in_flight: u64,
}

/// What the run did and found.
pub struct ChaosOutcome {
    pub demo: DemoOutcome,
    /// Calls whose callbacks Twilio gave up on, and what reconciliation made of them.
    pub repairs: demo::Repairs,
    pub poisoned: Vec<String>,
    pub injected: BTreeMap<Fault, u64>,
    pub kills: Vec<Kill>,
    /// Invocations that failed or never answered (their instance was killed): their
    /// batches were redelivered.
    pub failed_invocations: u64,
    /// Messages in the DLQs when the run had drained, by pipeline.
    pub dlq_in: BTreeMap<WorkQueue, u64>,
    /// Of those, the poisoned calls' (the rest are mismatches, each named with its reason).
    pub dlq_poisoned: u64,
    /// Moved back to their queues after the fix.
    pub redriven: u64,
    /// Left in the DLQs at the end (must be 0).
    pub dlq_left: u64,
    pub transcription_jobs: usize,
    pub transcription_starts: u64,
    pub audio_objects: usize,
    pub incomplete_uploads: usize,
    pub logs: LogAudit,
    /// Signature checks made with a token past its TTL (Secrets Manager down): the
    /// functions' `TokensServedStale` metric.
    pub tokens_stale: u64,
    /// What the functions' metrics say of the run: messages handed back unstarted at a
    /// batch deadline, messages cut off mid-work, and the webhooks' queue breakers.
    pub workers: WorkerFigures,
    /// Callback acknowledgements during each outage: (service, p50 ms, p99 ms, callbacks).
    pub outage_acks: Vec<(&'static str, f64, f64, usize)>,
    /// The emulator's answers to the webhooks as the proxy timed them (ms).
    pub webhook_answers: Vec<u64>,
    /// Where every process's output of the run is.
    pub log_dir: std::path::PathBuf,
}

impl ChaosOutcome {
    pub fn mismatches(&self) -> &[String] {
        &self.demo.mismatches
    }
}

/// Kills worker instances while they work: mostly the status worker, every third kill a
/// recording worker mid-download. Stops at `options.kills` or when `done` is set.
async fn kill_workers(stack: &LocalStack, options: &ChaosOptions, done: &AtomicBool) -> Vec<Kill> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x6b69_6c6c);
    let mut kills = Vec::new();
    while kills.len() < options.kills && !done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2500))).await;
        let (function, poller) = if kills.len() % 3 == 2 {
            (RECORDING_WORKER, &stack.recording_poller)
        } else {
            (STATUS_WORKER, &stack.status_poller)
        };
        let batches_in_flight = poller.stats.in_flight.load(Ordering::SeqCst);
        if batches_in_flight == 0 {
            continue;
        }
        let instance = rng.random_range(0..stack.functions.instances(function).max(1));
        match stack.functions.kill_and_restart(function, instance) {
            Ok(()) => kills.push(Kill {
                function,
                instance,
                batches_in_flight,
            }),
            Err(e) => eprintln!("could not kill {function}/{instance}: {e:#}"),
        }
    }
    kills
}

/// Plays the calls under faults, redrives the DLQs after the fix, and checks everything.
pub async fn play(stack: &LocalStack, options: &ChaosOptions) -> anyhow::Result<ChaosOutcome> {
    let proxy = stack
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the chaos run needs a stack with a fault proxy"))?;
    let simulate_options = SimulateOptions {
        softphone: Some(stack.softphone_sign_in()),
        ..options.simulate_options(stack.routes())
    };
    let done = AtomicBool::new(false);
    let driving = async {
        proxy.start_clock();
        let driven = demo::drive(stack, &simulate_options).await;
        done.store(true, Ordering::SeqCst);
        driven
    };
    let (driven, kills) = tokio::join!(driving, kill_workers(stack, options, &done));
    let (report, drain_time) = driven?;

    // The poisoned calls' events (their dialled legs' with them) rest in the DLQs, and nothing
    // else may: a healthy event there is a mismatch, named with the worker's reason. Then the
    // fix goes out and ops redrive them.
    let ops = voicectl::connect::Stack::with_config(local::STACK_NAME, &stack.sdk);
    let poisoned = options.poisoned();
    let mut problems = Vec::new();
    let mut dlq_in = BTreeMap::new();
    let mut dlq_poisoned = 0;
    let mut all_queues = Vec::new();
    for pipeline in WorkQueue::ALL {
        let queues = ops.queues(pipeline).await?;
        let letters = dlq::peek(&ops, &queues, DLQ_READ_LIMIT).await?;
        dlq_in.insert(pipeline, letters.len() as u64);
        for letter in letters {
            // As the proxy poisons them: any write that names a poisoned call, so a dialled
            // leg's events (their ParentCallSid is the poisoned call) rest there too.
            let of_poisoned = poisoned
                .iter()
                .any(|sid| letter.body.contains(sid.as_str()));
            if of_poisoned {
                dlq_poisoned += 1;
            } else {
                problems.push(dead_letter_mismatch(
                    "a healthy event was dead-lettered",
                    &letter,
                ));
            }
        }
        all_queues.push(queues);
    }
    proxy.fix();
    let mut redriven = 0;
    let redrive = RedriveOptions {
        hold: Duration::from_secs(30),
        ..RedriveOptions::default()
    };
    for queues in &all_queues {
        redriven += dlq::redrive(
            &ops,
            queues,
            &redrive,
            &ProgressBar::hidden(),
            &AtomicBool::new(false),
        )
        .await?
        .moved;
    }
    stack.wait_until_drained(Duration::from_secs(900)).await?;
    let mut dlq_left = 0;
    for queues in &all_queues {
        let left = dlq::peek(&ops, queues, DLQ_READ_LIMIT).await?;
        dlq_left += left.len() as u64;
        for letter in left {
            problems.push(dead_letter_mismatch(
                "left in a DLQ after the redrive",
                &letter,
            ));
        }
    }

    let outage_acks = outage_acks(&report, proxy, &options.outages);
    let mut outcome = demo::check(stack, report, drain_time).await?;
    if options.poisoned_calls > 0 && dlq_in.values().sum::<u64>() == 0 {
        problems.push("the poisoned calls' events never reached a DLQ".into());
    }
    let (transcription_jobs, transcription_starts) =
        check_transcription_starts(&outcome.report, proxy, &mut problems);
    let (audio_objects, incomplete_uploads) = count_objects(stack).await?;
    if audio_objects != outcome.recordings.archived {
        problems.push(format!(
            "{audio_objects} audio objects in S3 for {} archived recordings",
            outcome.recordings.archived
        ));
    }
    // Last, after the S3 count: calls whose callbacks Twilio gave up on, repaired by
    // reconciliation from Twilio's REST API.
    let repairs = demo::repair_gave_up(stack, options.seed).await?;
    problems.extend(repairs.unrepaired.iter().cloned());
    outcome.mismatches.extend(problems);
    Ok(ChaosOutcome {
        repairs,
        failed_invocations: [
            &stack.status_poller,
            &stack.recording_poller,
            &stack.transcript_poller,
        ]
        .iter()
        .map(|p| p.stats.invoke_errors.load(Ordering::Relaxed))
        .sum(),
        demo: outcome,
        poisoned,
        injected: proxy.injected(),
        kills,
        dlq_in,
        dlq_poisoned,
        redriven,
        dlq_left,
        transcription_jobs,
        transcription_starts,
        audio_objects,
        incomplete_uploads,
        logs: LogAudit::default(),
        tokens_stale: 0,
        workers: WorkerFigures::default(),
        outage_acks,
        webhook_answers: proxy.webhook_answers(),
        log_dir: stack.log_dir.clone(),
    })
}

/// Dead letters read at a time, per queue: more than a run ever leaves.
const DLQ_READ_LIMIT: usize = 100_000;

/// A dead letter as a mismatch line: what it is and why its worker gave up.
fn dead_letter_mismatch(what: &str, letter: &dlq::DeadLetter) -> String {
    format!(
        "{what}: {} {} {} on the {} queue, {}",
        letter.kind,
        letter.call_sid.as_deref().unwrap_or("-"),
        letter.subject.as_deref().unwrap_or(""),
        letter.pipeline,
        letter
            .failure_reason
            .as_deref()
            .unwrap_or("moved by SQS itself, no reason given")
    )
}

/// Callback acknowledgement latency (p50, p99) of the callbacks sent during each outage.
fn outage_acks(
    report: &SimulationReport,
    proxy: &FaultProxy,
    outages: &[Outage],
) -> Vec<(&'static str, f64, f64, usize)> {
    let Some(clock) = proxy.clock_started() else {
        return Vec::new();
    };
    outages
        .iter()
        .map(|o| {
            let window = clock + o.from..clock + o.from + o.lasts;
            let (p50, n) = report.latency_ms_within(window.clone(), 50.0);
            let (p99, _) = report.latency_ms_within(window, 99.0);
            (o.service, p50, p99, n)
        })
        .collect()
}

/// Every recording the calls made had its Transcribe job started by exactly one successful
/// `StartTranscriptionJob` (a retried start is answered "conflict", which the worker takes
/// as done); and no job was started for anything else. The jobs, and the starts counted.
fn check_transcription_starts(
    report: &SimulationReport,
    proxy: &FaultProxy,
    problems: &mut Vec<String>,
) -> (usize, u64) {
    let mut starts: HashMap<String, u32> = proxy.transcription_starts();
    let total = starts.values().map(|&n| u64::from(n)).sum();
    let mut jobs = 0;
    for call in &report.calls {
        for requested in &call.conversation.requested {
            if !requested.is_for("/twilio/recording") {
                continue;
            }
            let Some(sid) = requested.params.get("RecordingSid") else {
                continue;
            };
            jobs += 1;
            match starts.remove(sid) {
                Some(1) => {}
                n => problems.push(format!(
                    "{sid}: transcription job started {} times",
                    n.unwrap_or(0)
                )),
            }
        }
    }
    for (job, n) in starts {
        problems.push(format!("job {job} started {n} times for no recording"));
    }
    (jobs, total)
}

/// Audio objects in the recordings bucket, and multipart uploads left open (by uploads a
/// killed worker never finished; the bucket's lifecycle rule aborts them after a day).
async fn count_objects(stack: &LocalStack) -> anyhow::Result<(usize, usize)> {
    let s3 = voicehooks::aws::s3_client(&stack.sdk);
    let bucket = &stack.resources.recordings_bucket;
    let mut objects = 0;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(voicehooks::recording::keys::AUDIO_PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        objects += page?.contents().len();
    }
    let uploads = s3.list_multipart_uploads().bucket(bucket).send().await?;
    Ok((objects, uploads.uploads().len()))
}

/// Starts a stack behind the fault proxy, plays, checks, stops it and audits its logs.
pub async fn run_checked(options: &ChaosOptions, label: &str) -> anyhow::Result<ChaosOutcome> {
    let stack = LocalStack::start(StackOptions {
        label: label.into(),
        faults: Some(options.fault_plan(options.poisoned())),
        secret_ttl: Some(CHAOS_SECRET_TTL),
        release: options.release,
        ..Default::default()
    })
    .await?;
    println!("  stack up (logs {})", stack.log_dir.display());
    let log_dir = stack.log_dir.clone();
    let outcome = play(&stack, options).await;
    stack.stop().await;
    let mut outcome = outcome?;
    outcome.logs = audit_logs(&log_dir, crate::audit::LOCAL_SECRETS)?;
    let (emf, _) = Emf::read(&log_dir, &BTreeMap::new())?;
    outcome.tokens_stale = emf.total(voicehooks::metrics::name::TOKENS_STALE) as u64;
    outcome.workers = WorkerFigures::of(&emf);
    let secrets_down = options
        .outages
        .iter()
        .any(|o| o.service == "secretsmanager");
    if secrets_down && outcome.tokens_stale == 0 {
        outcome
            .demo
            .mismatches
            .push("Secrets Manager was down, yet no token was served stale".into());
    }
    let findings = outcome.logs.findings();
    outcome.demo.mismatches.extend(findings);
    Ok(outcome)
}

/// `make chaos`: the run, and its figures; whether nothing mismatched.
pub async fn run(options: ChaosOptions) -> anyhow::Result<bool> {
    let outages: Vec<String> = options
        .outages
        .iter()
        .map(|o| {
            format!(
                "{} down for {} s from {} s",
                o.service,
                o.lasts.as_secs(),
                o.from.as_secs()
            )
        })
        .collect();
    let slowdowns: Vec<String> = options
        .slowdowns
        .iter()
        .map(|s| {
            format!(
                "{} {:.1} s slow for {} s from {} s",
                s.service,
                s.delay.as_secs_f64(),
                s.lasts.as_secs(),
                s.from.as_secs()
            )
        })
        .collect();
    println!(
        "voicehooks chaos: {} calls through the local stack, Twilio delivering as it does (each \
         URL's connection overrides), with 20% duplicate deliveries, 30% of legs reordered, 5% \
         of callback enqueues refused (spilled; a fifth of those spills refused too, so 503), \
         {}, recording media not ready for the first 2 fetches of 30%, S3 / DynamoDB / SQS / \
         Transcribe faults, {} worker kills and {} poisoned calls; {}",
        options.calls,
        if outages.is_empty() && slowdowns.is_empty() {
            "no outage".to_owned()
        } else {
            [outages, slowdowns].concat().join(", ")
        },
        options.kills,
        options.poisoned_calls,
        options.rate.map_or("calls unpaced".to_owned(), |r| format!(
            "{r} calls started per second"
        ))
    );
    let started = Instant::now();
    let outcome = run_checked(&options, "chaos").await?;
    print_outcome(&outcome, started.elapsed());
    Ok(outcome.demo.mismatches.is_empty())
}

pub fn print_outcome(outcome: &ChaosOutcome, elapsed: Duration) {
    demo::print_figures(&outcome.demo);
    println!("  {}", outcome.repairs.summary());
    println!();
    println!("  faults");
    for (fault, n) in &outcome.injected {
        println!("    {:<54} {n}", fault.describe());
    }
    let by_function = |name: &str| outcome.kills.iter().filter(|k| k.function == name).count();
    println!(
        "    {:<54} {} ({} status-worker, {} recording-worker); {} invocations failed with them, their batches redelivered",
        "worker instances killed mid-batch (SIGKILL)",
        outcome.kills.len(),
        by_function(STATUS_WORKER),
        by_function(RECORDING_WORKER),
        outcome.failed_invocations
    );
    let dlq: Vec<String> = outcome
        .dlq_in
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    println!(
        "  dead-letter queues       in {} ({}), {} of them from {} poisoned calls; redriven {} after the fix; left {}",
        outcome.dlq_in.values().sum::<u64>(),
        dlq.join(", "),
        outcome.dlq_poisoned,
        outcome.poisoned.len(),
        outcome.redriven,
        outcome.dlq_left
    );
    let workers = &outcome.workers;
    println!(
        "  batch deadlines          {} messages handed back unstarted (no receive spent), {} cut off mid-work (retried)",
        workers.handed_back, workers.cut_off
    );
    println!(
        "  queue breakers           opened {} times, closed {}; {} events spilled without asking SQS",
        workers.breaker_opened, workers.breaker_closed, workers.breaker_spills
    );
    for (service, p50, p99, n) in &outcome.outage_acks {
        println!("  acks while {service:<13} {n} callbacks, p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    let answers = &outcome.webhook_answers;
    println!(
        "  emulator to webhooks     {} answers, p50 {} ms, p99 {} ms, {} over 1 s (moto's own wait and serve: EMULATOR-LOAD in moto.log)",
        answers.len(),
        simulate::percentile(answers, 50.0),
        simulate::percentile(answers, 99.0),
        answers.iter().filter(|&&ms| ms > 1000).count()
    );
    println!(
        "  transcription jobs       {} recordings, {} successful starts (each job once)",
        outcome.transcription_jobs, outcome.transcription_starts
    );
    println!(
        "  S3 audio objects         {} (one per archived recording); {} multipart uploads left open by killed workers",
        outcome.audio_objects, outcome.incomplete_uploads
    );
    println!(
        "  tokens served stale      {} signature checks while Secrets Manager could not be read",
        outcome.tokens_stale
    );
    println!("  logs audited             {}", outcome.logs.summary());
    println!("  run time                 {:.0} s", elapsed.as_secs_f64());
    demo::print_mismatches(&outcome.demo.mismatches);
}
