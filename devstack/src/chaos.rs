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
use crate::faults::{Fault, FaultPlan, FaultProxy, Outage};
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
}

/// How long a token stays cached in the chaos run: short, so a Secrets Manager outage finds
/// the webhooks past their TTL (serving the last good token) rather than still inside it.
pub const CHAOS_SECRET_TTL: Duration = Duration::from_secs(10);

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
            // retried as the URLs' overrides allow. (Not during an outage, when every
            // callback spills: S3 failing with SQS is not the day this run plays.)
            spill_failure_rate: 0.2,
            outages: self.outages.clone(),
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

    // The poisoned calls' events rest in the DLQs; the fix goes out; ops redrive them.
    let ops = voicectl::connect::Stack::with_config(local::STACK_NAME, &stack.sdk);
    let mut dlq_in = BTreeMap::new();
    let mut all_queues = Vec::new();
    for pipeline in WorkQueue::ALL {
        let queues = ops.queues(pipeline).await?;
        dlq_in.insert(pipeline, stack.queue_depth(&queues.dlq_url).await?);
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
        dlq_left += stack.queue_depth(&queues.dlq_url).await?;
    }

    let mut outcome = demo::check(stack, report, drain_time).await?;
    let mut problems = Vec::new();
    if dlq_left > 0 {
        problems.push(format!("{dlq_left} message(s) left in the DLQs"));
    }
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
        poisoned: options.poisoned(),
        injected: proxy.injected(),
        kills,
        dlq_in,
        redriven,
        dlq_left,
        transcription_jobs,
        transcription_starts,
        audio_objects,
        incomplete_uploads,
        logs: LogAudit::default(),
        tokens_stale: 0,
        log_dir: stack.log_dir.clone(),
    })
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
    println!(
        "voicehooks chaos: {} calls through the local stack, Twilio delivering as it does (each \
         URL's connection overrides), with 20% duplicate deliveries, 30% of legs reordered, 5% \
         of callback enqueues refused (spilled; a fifth of those spills refused too, so 503), \
         {}, recording media not ready for the first 2 fetches of 30%, S3 / DynamoDB / SQS / \
         Transcribe faults, {} worker kills and {} poisoned calls; {}",
        options.calls,
        if outages.is_empty() {
            "no outage".to_owned()
        } else {
            outages.join(", ")
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
        "  dead-letter queues       in {} ({}) from {} poisoned calls; redriven {} after the fix; left {}",
        outcome.dlq_in.values().sum::<u64>(),
        dlq.join(", "),
        outcome.poisoned.len(),
        outcome.redriven,
        outcome.dlq_left
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
