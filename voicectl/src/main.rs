//! `voicectl`: see `voicectl --help`. Argument parsing and printing only; each command is
//! a module of the library.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use voicectl::connect::{DEFAULT_STACK, PublicBase, Stack};
use voicectl::dlq::{self, Filter, RedriveOptions};
use voicectl::media_server::MediaServer;
use voicectl::signing::{self, Request};
use voicectl::simulate::{self, SimulateOptions, Twilio};
use voicectl::smoke::{self, SmokeOptions};
use voicectl::{numbers, progress_bar, replay, timeline};
use voicehooks::config::local;
use voicehooks::flows::{self, Flows, Step, Urls};
use voicehooks::stack_names::WorkQueue;
use voicehooks::twilio::Params;
use voicehooks::twilio::signature::{self, Algorithm};

#[derive(Parser)]
#[command(
    name = "voicectl",
    version,
    about = "Operate voicehooks: dead-letter queues, replays, call timelines, signatures, \
             simulated and smoke-test calls.",
    long_about = "Operate voicehooks: dead-letter queues, replays, call timelines, signatures, \
                  simulated and smoke-test calls.\n\n\
                  It finds a stack's queues, table and secret by the stack's name, with the \
                  usual AWS credentials and region. For the local stack (`make up`), load \
                  `.local/stack.env` first (the Makefile's `make dlq` and `make replay` do).",
    after_help = "Examples:\n  \
                  voicectl --stack voicehooks-prod dlq stats\n  \
                  voicectl call CAe1a2b3c4d5e6f708192a3b4c5d6e7f80\n  \
                  voicectl --json dlq peek --queue status | jq '.[].failure_reason'"
)]
struct Cli {
    /// The stack's name (`sam deploy --stack-name`); `voicehooks-local` for `make up`.
    #[arg(long, global = true, env = "VOICEHOOKS_STACK", default_value = DEFAULT_STACK)]
    stack: String,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dead-letter queues: stats, peek, redrive.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
                      voicectl dlq stats\n  \
                      voicectl dlq peek --queue recording --save dlq-saved/\n  \
                      voicectl dlq redrive --call CAe1a2b3c4d5e6f708192a3b4c5d6e7f80 --dry-run"
    )]
    Dlq(DlqCommand),
    /// Send events again: files to a webhook or a queue, or a call's stored events.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
                      voicectl replay files dlq-saved/ --queue\n  \
                      voicectl replay calls CAe1a2b3c4d5e6f708192a3b4c5d6e7f80"
    )]
    Replay(ReplayCommand),
    /// A call's timeline: every status (applied, duplicate, late), its recordings and
    /// transcripts.
    ///
    /// Example: voicectl call CAe1a2b3c4d5e6f708192a3b4c5d6e7f80
    #[command(verbatim_doc_comment)]
    Call { call_sid: String },
    /// Compute the X-Twilio-Signature of a request.
    ///
    /// Examples:
    ///   voicectl sign --url https://hooks.example.com/twilio/status -p CallSid=CA123 -p CallStatus=ringing
    ///   voicectl sign --url https://hooks.example.com/events --body-file event.json
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Check a captured request's signature and, when it fails, say why: the URL forms
    /// tried, which token, the JSON body's hash, and a nearby URL that does match.
    ///
    /// Examples:
    ///   voicectl verify --url https://hooks.example.com/twilio/status \
    ///       --signature 'v+j/0+Hb0+uit+vZx1CRRuJJiyE=' --form 'CallSid=CA123&CallStatus=ringing'
    ///   voicectl verify --batch cases.jsonl   # one {"url","params","body","auth_token","signature"} per line
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Play calls the way Twilio does: ask the voice webhook, follow its TwiML, then send
    /// every callback (with duplicates, reordering, delays and retries); print latencies
    /// and each call's outcome.
    ///
    /// Example (the local stack from `make up`, whose .local/stack.env gives the routes):
    ///   set -a; . .local/stack.env; set +a
    ///   voicectl simulate --calls 50 --rate 10 --delays 0.1 --serve-media
    #[command(verbatim_doc_comment)]
    Simulate(SimulateArgs),
    /// One synthetic call through a stack, then a check that it landed in the table.
    ///
    /// Example: voicectl smoke --base-url https://abc123.execute-api.eu-west-1.amazonaws.com
    #[command(verbatim_doc_comment)]
    Smoke(SmokeArgs),
    /// The account's phone numbers and TwiML App, read from Twilio's REST API, against the
    /// stack's outputs: drift found and fixed. Exit codes: 0 in sync, 2 drift found (check,
    /// apply --dry-run), 1 an error (Twilio or the secret unreachable).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
                      voicectl numbers check\n  \
                      voicectl numbers apply --number +14155550100 --dry-run"
    )]
    Numbers(NumbersCommand),
    /// Twilio is the source of truth: list its Calls and Recordings of the window (every
    /// page) and repair what no callback delivered. A call that ended at Twilio without a
    /// final status here gets it (a `reconciled` timeline entry, never undoing an applied
    /// event); a completed recording that is not archived is queued for the recording worker.
    ///
    /// Examples:
    ///   voicectl reconcile --since 2h
    ///   voicectl --json reconcile --since 30m
    #[command(verbatim_doc_comment)]
    Reconcile {
        /// How far back (Twilio's start time of the call, creation of the recording).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2h")]
        since: Duration,
        #[command(flatten)]
        api: TwilioApiArgs,
    },
    /// Check the call flows, or print the TwiML a call would get, before deploying.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
                      voicectl flows check\n  \
                      voicectl flows twiml --to +14155550100"
    )]
    Flows(FlowsCommand),
}

/// `--queue status|recording|transcript`, read straight into a [`WorkQueue`].
fn work_queue_arg() -> impl clap::builder::TypedValueParser<Value = WorkQueue> {
    clap::builder::PossibleValuesParser::new(WorkQueue::ALL.map(WorkQueue::as_str)).map(|name| {
        WorkQueue::ALL
            .into_iter()
            .find(|q| q.as_str() == name)
            .expect("clap admits only the possible values")
    })
}

/// The queue asked for, or all three.
fn work_queues(queue: Option<WorkQueue>) -> Vec<WorkQueue> {
    queue.map_or_else(|| WorkQueue::ALL.to_vec(), |q| vec![q])
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Depth of every DLQ, and the spill beside them. Read-only: SQS's approximate counts,
    /// no message received. Ages: `dlq peek` (which receives) or the stack's dashboard.
    ///
    /// Example: voicectl dlq stats
    #[command(verbatim_doc_comment)]
    Stats,
    /// Decode dead letters: kind, CallSid, receive count, age, why the worker gave up.
    /// They stay in the DLQ (each peek counts as one more receive).
    ///
    /// Examples:
    ///   voicectl dlq peek --queue status --limit 5
    ///   voicectl dlq peek --save dlq-2026-11-23/   # one envelope file each, for `replay files`
    #[command(verbatim_doc_comment)]
    Peek {
        #[arg(long, value_parser = work_queue_arg())]
        queue: Option<WorkQueue>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Write each message body to DIR/<queue>-<message id>.json.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Move dead letters back to their queue: all, or by kind, CallSid or age. Each is sent
    /// to the queue before it is deleted from the DLQ, so a crash can leave a copy in both
    /// (the workers absorb it), never lose one.
    ///
    /// Only what was in the DLQ when the run began moves, each event once: a message that
    /// fails again at once is back in the DLQ, and the run still ends. Messages whose worker
    /// said no retry can help (a refused URL, bad credentials) stay unless --force. Ctrl-C
    /// finishes the batch in hand and prints what moved and what is left.
    ///
    /// Examples:
    ///   voicectl dlq redrive --dry-run
    ///   voicectl dlq redrive --queue recording --kind recording.status --older-than 1h
    ///   voicectl dlq redrive --call CAe1a2b3c4d5e6f708192a3b4c5d6e7f80 --rate 5
    #[command(verbatim_doc_comment)]
    Redrive {
        #[arg(long, value_parser = work_queue_arg())]
        queue: Option<WorkQueue>,
        /// Only this kind (call.status, call.started, recording.status,
        /// transcription.twilio, transcribe.job); repeatable.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only this call's events; repeatable.
        #[arg(long = "call")]
        calls: Vec<String>,
        /// Only messages at least this old (e.g. 30m, 2h): since a worker dead-lettered
        /// them, or since first sent when SQS moved them.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Only messages at most this old.
        #[arg(long, value_parser = humantime::parse_duration)]
        newer_than: Option<Duration>,
        /// Count what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move messages the worker marked permanent too (after fixing what refused them:
        /// the allow-list, the credentials).
        #[arg(long)]
        force: bool,
        /// Messages per second at most, to spare the workers a flood.
        #[arg(long)]
        rate: Option<f64>,
        /// How long a message being looked at stays hidden; after a crash, it is back
        /// in the DLQ after this.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        hold: Duration,
    },
}

#[derive(Subcommand)]
enum ReplayCommand {
    /// Send event files again: sample events (events/), envelopes saved by `dlq peek
    /// --save`, SQS batch samples. To a webhook, signed with the stack's token (`--url`),
    /// or onto their queue (`--queue`). Twilio's idempotency token rides along, so an
    /// event already applied stays applied once.
    ///
    /// Examples:
    ///   voicectl replay files dlq-2026-11-23/ --queue
    ///   voicectl replay files events/webhook-status/ --url https://abc123.execute-api.eu-west-1.amazonaws.com
    #[command(verbatim_doc_comment)]
    Files {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Put each event on its queue, as its webhook would have (instead of --url).
        #[arg(long)]
        queue: bool,
        /// The public base URL Twilio is given; each event goes to its webhook under it.
        #[arg(long, env = "VOICEHOOKS_PUBLIC_BASE_URL")]
        url: Option<String>,
        /// PUBLIC_PREFIX=TARGET_PREFIX: deliver a public URL somewhere else (the local
        /// stack's function URLs; `make up` prints them).
        #[arg(long = "route", value_parser = parse_route, env = "VOICEHOOKS_ROUTES", value_delimiter = ',')]
        routes: Vec<(String, String)>,
        /// Sign with this token instead of the stack secret's current one.
        #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
    },
    /// Re-apply the stored events of calls after a fix: the call's state is rebuilt from
    /// every event it received, in the order the webhooks accepted them, as a first-time run
    /// would leave it (after a redrive put them back out of order, too).
    /// Safe to interrupt and run again. Recordings are untouched.
    ///
    /// Examples:
    ///   voicectl replay calls CAe1a2b3c4d5e6f708192a3b4c5d6e7f80
    ///   voicectl replay calls --since 2026-11-23T02:00:00Z --until 2026-11-23T03:30:00Z --dry-run
    #[command(verbatim_doc_comment)]
    Calls {
        call_sids: Vec<String>,
        /// With --until: every call with an event received in the window (RFC 3339, UTC).
        #[arg(long, requires = "until")]
        since: Option<String>,
        #[arg(long, requires = "since")]
        until: Option<String>,
        /// List the calls; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct RequestArgs {
    /// The URL Twilio requested (scheme, host, path and query as Twilio was given them).
    #[arg(long)]
    url: Option<String>,
    /// A form parameter NAME=VALUE (repeatable, in order).
    #[arg(short = 'p', long = "param", value_parser = parse_pair)]
    params: Vec<(String, String)>,
    /// The raw form body, as captured (`A=1&B=2`).
    #[arg(long, conflicts_with = "body_file")]
    form: Option<String>,
    /// A JSON body, as captured (the URL carries its bodySHA256).
    #[arg(long)]
    body_file: Option<PathBuf>,
}

impl RequestArgs {
    fn request(&self) -> anyhow::Result<Request> {
        let mut params = self.params.clone();
        if let Some(form) = &self.form {
            params.extend(
                Params::from_form(form.as_bytes())
                    .map_err(|e| anyhow::anyhow!("--form: {e}"))?
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
        let body = match &self.body_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Request {
            url: self
                .url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--url is required"))?,
            params,
            body,
        })
    }
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    request: RequestArgs,
    /// Sign with this token (or SharedKey secret) instead of the stack secret's.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Sign as a SharedKey does: `key=<sid>,algorithm=HMAC_SHA256` (the
    /// X-Twilio-Webhooks-Signature-Settings header's value), with that key's secret.
    #[arg(long)]
    signature_settings: Option<String>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Read JSON lines (from FILE, or stdin with `-`) and print one verdict line each.
    #[arg(long, num_args = 0..=1, default_missing_value = "-", conflicts_with_all = ["url", "signature"])]
    batch: Option<PathBuf>,
    #[command(flatten)]
    request: RequestArgs,
    /// The X-Twilio-Signature header as received.
    #[arg(long, required_unless_present = "batch")]
    signature: Option<String>,
    /// Check this token (or SharedKey secret) instead of the stack secret's current and
    /// previous ones.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// The X-Twilio-Webhooks-Signature-Settings header as received: a SharedKey signature,
    /// checked with the secret's webhook_shared_keys (or --auth-token as the key's secret).
    #[arg(long)]
    signature_settings: Option<String>,
}

#[derive(Args)]
struct SimulateArgs {
    /// The public base URL Twilio was given; signatures cover it.
    #[arg(long, env = "VOICEHOOKS_PUBLIC_BASE_URL", default_value = local::PUBLIC_BASE_URL)]
    base_url: String,
    /// PUBLIC_PREFIX=TARGET_PREFIX: deliver requests for a public URL to another place (as
    /// API Gateway routes them). Without any, requests go to the public URLs themselves.
    #[arg(long = "route", value_parser = parse_route, env = "VOICEHOOKS_ROUTES", value_delimiter = ',')]
    routes: Vec<(String, String)>,
    /// A number callers dial (repeatable); default: every number in the flows file.
    #[arg(long = "number")]
    numbers: Vec<String>,
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Calls started per second at most (default: as fast as --concurrency allows).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Share of callbacks delivered twice.
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Share of legs whose callbacks arrive out of order.
    #[arg(long, default_value_t = 0.2)]
    reorder: f64,
    /// Share of callbacks held back before delivery, by up to --max-delay.
    #[arg(long, default_value_t = 0.0)]
    delays: f64,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    max_delay: Duration,
    /// Share of calls placed from a browser softphone.
    #[arg(long, default_value_t = 0.1)]
    softphone: f64,
    /// The numbers have no VoiceFallbackUrl: a failed voice request is Twilio's
    /// application error for the caller. (Deliveries follow each URL's connection
    /// overrides, as Twilio does: attempts, timeouts and what is retried.)
    #[arg(long)]
    no_voice_fallback: bool,
    /// Serve the calls' recordings (as Twilio's API does) on 127.0.0.1:--media-port and
    /// point the recording callbacks there; keep serving until every one was fetched.
    #[arg(long)]
    serve_media: bool,
    /// The port `make up`'s recording worker fetches stand-in media from.
    #[arg(long, default_value_t = 9100)]
    media_port: u16,
    /// Share of recordings whose media answers 404 at first.
    #[arg(long, default_value_t = 0.2)]
    media_not_ready: f64,
    /// With --serve-media: how long to keep serving after the calls, at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    linger: Duration,
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = local::ACCOUNT_SID)]
    account_sid: String,
    /// The auth token to sign with (read from the environment so it stays out of `ps`).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = local::AUTH_TOKEN, hide_default_value = true, hide_env_values = true)]
    auth_token: String,
    /// With --serve-media: an API key the media also accepts (the worker uses the secret's
    /// API key when it has one, as Twilio recommends).
    #[arg(long, env = "TWILIO_API_KEY_SID", default_value = local::API_KEY_SID)]
    api_key_sid: String,
    #[arg(long, env = "TWILIO_API_KEY_SECRET", default_value = local::API_KEY_SECRET, hide_default_value = true, hide_env_values = true)]
    api_key_secret: String,
}

#[derive(Args)]
struct SmokeArgs {
    /// The public base URL Twilio is given (the stack's `WebhookBaseUrl` output).
    #[arg(long, env = "VOICEHOOKS_PUBLIC_BASE_URL")]
    base_url: String,
    /// PUBLIC_PREFIX=TARGET_PREFIX, as for `simulate` (the local stack).
    #[arg(long = "route", value_parser = parse_route, env = "VOICEHOOKS_ROUTES", value_delimiter = ',')]
    routes: Vec<(String, String)>,
    /// The number the call dials.
    #[arg(long, default_value = "+14155550100")]
    to: String,
    /// How long to wait for the call to land in the table.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: Duration,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(public, target)| (public.to_owned(), target.to_owned()))
        .ok_or_else(|| "expected PUBLIC_PREFIX=TARGET_PREFIX".into())
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".into())
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn age(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

async fn dlq_command(stack: &Stack, command: DlqCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::Stats => {
            let mut dead_letter_queues = Vec::new();
            for pipeline in WorkQueue::ALL {
                let queues = stack.queues(pipeline).await?;
                dead_letter_queues.push(dlq::stats(stack, &queues).await?);
            }
            let backlog = dlq::Backlog {
                dead_letter_queues,
                spill: dlq::spill_stats(stack).await?,
            };
            if json {
                print_json(&backlog)?;
            } else {
                for s in &backlog.dead_letter_queues {
                    println!(
                        "{:<44} {:>6} waiting {:>6} in flight",
                        s.dlq, s.messages, s.in_flight,
                    );
                }
                let spill = &backlog.spill;
                println!(
                    "{:<44} {:>6} waiting for the drainer (oldest {})",
                    format!("spill: {}", spill.bucket),
                    spill.events,
                    spill.oldest_age_secs.map_or("-".to_owned(), age)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Peek { queue, limit, save } => {
            let mut letters = Vec::new();
            let mut empty = Vec::new();
            for pipeline in work_queues(queue) {
                let queues = stack.queues(pipeline).await?;
                let peeked = dlq::peek(stack, &queues, limit).await?;
                if peeked.is_empty() {
                    empty.push(queues.dlq_name);
                }
                letters.extend(peeked);
            }
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir)?;
                for l in &letters {
                    let file = dir.join(format!("{}-{}.json", l.pipeline, l.message_id));
                    std::fs::write(file, &l.body)?;
                }
            }
            if json {
                print_json(&letters)?;
            } else {
                for l in &letters {
                    println!(
                        "{:<10} {}  {}  received {}x  age {}\n           call {}{}\n           why: {}",
                        l.pipeline.as_str(),
                        l.message_id,
                        l.kind,
                        l.receive_count,
                        age(l.age_secs),
                        l.call_sid.as_deref().unwrap_or("-"),
                        l.subject
                            .as_deref()
                            .map_or(String::new(), |s| format!("  {s}")),
                        l.failure_reason.as_deref().unwrap_or(
                            "not recorded (SQS moved it itself; the worker's log has each retry's reason)"
                        ),
                    );
                }
                for dlq in &empty {
                    println!("{dlq}: empty");
                }
                if let Some(dir) = &save {
                    println!("saved {} message(s) to {}", letters.len(), dir.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive {
            queue,
            kinds,
            calls,
            older_than,
            newer_than,
            dry_run,
            force,
            rate,
            hold,
        } => {
            let options = RedriveOptions {
                filter: Filter {
                    kinds,
                    calls,
                    older_than,
                    newer_than,
                },
                dry_run,
                force,
                rate,
                hold,
            };
            let interrupt = Arc::new(AtomicBool::new(false));
            let on_ctrl_c = tokio::spawn({
                let interrupt = interrupt.clone();
                async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        interrupt.store(true, Ordering::SeqCst);
                    }
                }
            });
            let bar = progress_bar(0, json);
            let mut reports = Vec::new();
            for pipeline in work_queues(queue) {
                if interrupt.load(Ordering::SeqCst) {
                    break;
                }
                let queues = stack.queues(pipeline).await?;
                reports.push(dlq::redrive(stack, &queues, &options, &bar, &interrupt).await?);
            }
            on_ctrl_c.abort();
            bar.finish_and_clear();
            if json {
                print_json(&reports)?;
            } else {
                for r in &reports {
                    println!("{}", redrive_line(r));
                }
            }
            let interrupted = interrupt.load(Ordering::SeqCst);
            if interrupted && !json {
                println!("interrupted: the rest is still in the DLQ; run the same command again");
            }
            Ok(exit(!interrupted && reports.iter().all(|r| r.failed == 0)))
        }
    }
}

/// One DLQ's redrive, in a line: what moved, and what stayed and why.
fn redrive_line(r: &dlq::RedriveReport) -> String {
    let mut stayed = Vec::new();
    for (n, why) in [
        (r.skipped, "not matching"),
        (
            r.permanent,
            "permanent: no retry can help; --force after fixing the cause",
        ),
        (r.arrived_since_start, "dead-lettered again during this run"),
        (r.failed, "SQS refused the send"),
    ] {
        if n > 0 {
            stayed.push(format!("{n} {why}"));
        }
    }
    let mut line = format!(
        "{:<10} {} {}",
        r.pipeline.map_or("", WorkQueue::as_str),
        if r.dry_run { "would move" } else { "moved" },
        r.moved
    );
    if !stayed.is_empty() {
        line += &format!("; stay: {}", stayed.join(", "));
    }
    if r.copied > 0 {
        line += &format!(
            "; {} copied (in both queues: the workers absorb them)",
            r.copied
        );
    }
    line + &format!("; {} in the DLQ now", r.left)
}

async fn replay_command(
    stack: &Stack,
    command: ReplayCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        ReplayCommand::Files {
            paths,
            queue,
            url,
            routes,
            auth_token,
        } => {
            let items = replay::load(&paths)?;
            let bar = progress_bar(items.len() as u64, json);
            let sent = match (queue, url) {
                (true, _) => replay::to_queues(stack, &items, &bar).await?,
                (false, Some(url)) => {
                    let token = stack.signing_token(auth_token).await?;
                    let twilio = Twilio::with_routes(routes, &token, Duration::from_secs(15))?;
                    replay::to_webhooks(&twilio, &url, &items, &bar).await
                }
                (false, None) => anyhow::bail!("give --queue, or --url with the public base URL"),
            };
            bar.finish_and_clear();
            if json {
                print_json(&sent)?;
            } else {
                for s in &sent {
                    println!(
                        "{:<8} {}  {}{}",
                        s.outcome,
                        s.file.display(),
                        s.to.as_deref()
                            .map_or(String::new(), |to| format!("→ {to}  ")),
                        s.detail
                    );
                }
                let count = |o: &str| sent.iter().filter(|s| s.outcome == o).count();
                println!(
                    "{} sent, {} refused, {} skipped",
                    count("sent"),
                    count("refused"),
                    count("skipped")
                );
            }
            Ok(exit(sent.iter().all(|s| s.outcome != "refused")))
        }
        ReplayCommand::Calls {
            mut call_sids,
            since,
            until,
            dry_run,
        } => {
            if let (Some(since), Some(until)) = (&since, &until) {
                call_sids.extend(stack.calls().calls_between(since, until).await?);
            }
            call_sids.sort();
            call_sids.dedup();
            anyhow::ensure!(
                !call_sids.is_empty(),
                "no calls: name some, or give --since and --until"
            );
            if dry_run {
                if json {
                    print_json(&call_sids)?;
                } else {
                    println!("would replay {} call(s):", call_sids.len());
                    call_sids.iter().for_each(|sid| println!("  {sid}"));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let bar = progress_bar(call_sids.len() as u64, json);
            let results = replay::calls(stack, &call_sids, &bar).await;
            bar.finish_and_clear();
            if json {
                print_json(&results)?;
            } else {
                for r in &results {
                    match (&r.replayed, &r.error) {
                        (Some(done), _) => println!(
                            "{}  {} events re-applied: {} applied, {} late{}",
                            r.call_sid,
                            done.events,
                            done.applied,
                            done.late,
                            if done.resumed {
                                " (finished an interrupted replay)"
                            } else {
                                ""
                            }
                        ),
                        (None, error) => println!(
                            "{}  not replayed: {}",
                            r.call_sid,
                            error.as_deref().unwrap_or("unknown")
                        ),
                    }
                }
            }
            Ok(exit(results.iter().all(|r| r.error.is_none())))
        }
    }
}

/// `verify --batch`: each line carries its own token, so no stack is needed.
fn verify_batch(batch: &std::path::Path) -> anyhow::Result<ExitCode> {
    let input: Box<dyn BufRead> = if batch.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(batch).map_err(|e| {
            anyhow::anyhow!("cannot read {}: {e}", batch.display())
        })?))
    };
    signing::verify_batch(input, std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    args: VerifyArgs,
    json: bool,
    stack: impl Future<Output = Stack>,
) -> anyhow::Result<ExitCode> {
    let request = args.request.request()?;
    let settings = args.signature_settings.as_deref();
    let Some(algorithm) = Algorithm::from_settings(settings) else {
        println!("INVALID: the settings name an algorithm Twilio's libraries do not know");
        return Ok(ExitCode::FAILURE);
    };
    // With a token given, the check is offline: the stack's base URL only from the
    // environment. Otherwise the stack's own, as deployed; a SharedKey signature is checked
    // with the secret's shared keys (the one the settings name).
    let (tokens, stack_base) = match args.auth_token {
        Some(token) => (vec![("given".to_owned(), token)], PublicBase::from_env()),
        None => {
            let stack = stack.await;
            let sid = settings.and_then(signature::settings_key);
            let tokens = stack
                .credentials()
                .await?
                .into_iter()
                .flat_map(|(stage, c)| match algorithm {
                    Algorithm::HmacSha1 => vec![(stage.to_owned(), c.auth_token.clone())],
                    Algorithm::HmacSha256 => c
                        .shared_keys(sid)
                        .map(|k| (format!("{stage} {}", k.sid), k.secret.clone()))
                        .collect(),
                })
                .collect();
            (tokens, stack.public_base_url().await)
        }
    };
    let results = signing::verify_with(
        algorithm,
        &tokens,
        &request,
        &args.signature.unwrap_or_default(),
    );
    let valid = results.iter().any(|r| r.diagnosis.valid);
    // Whether the stack would rebuild the URL Twilio signed: the usual cause of a 403 whose
    // signature is fine.
    let mismatch = stack_base
        .as_ref()
        .and_then(|base| signing::compare_with_stack(&request.url, base, valid));
    if json {
        print_json(&serde_json::json!({
            "valid": valid,
            "stack_public_base_url": stack_base,
            "url_mismatch": mismatch,
            "tokens": results,
        }))?;
    } else {
        if let Some(note) = &mismatch {
            print!("{note}");
        }
        print!("{}", signing::explain(&results));
    }
    Ok(exit(valid && mismatch.is_none()))
}

async fn simulate(args: SimulateArgs, json: bool) -> anyhow::Result<ExitCode> {
    let defaults = SimulateOptions::default();
    let options = SimulateOptions {
        calls: args.calls,
        seed: args.seed,
        concurrency: args.concurrency,
        duplicate_rate: args.duplicates,
        reorder_rate: args.reorder,
        public_base_url: args.base_url,
        routes: args.routes,
        numbers: if args.numbers.is_empty() {
            defaults.numbers
        } else {
            args.numbers
        },
        softphone_rate: args.softphone,
        account_sid: args.account_sid,
        auth_token: args.auth_token,
        media_not_ready_rate: args.media_not_ready,
        voice_fallback: !args.no_voice_fallback,
        fragment_signing: simulate::FragmentSigning::Either { seed: args.seed },
        rate: args.rate,
        delay_rate: args.delays,
        max_delay: args.max_delay,
        ..defaults
    };
    let media = if args.serve_media {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.media_port));
        let media = MediaServer::start_on(addr, &options.account_sid, &options.auth_token)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve media on {addr}: {e}"))?;
        media.accept_api_key(&args.api_key_sid, &args.api_key_secret);
        Some(media)
    } else {
        None
    };
    let bar = progress_bar(0, json);
    bar.set_message("calls played");
    let report = simulate::run_with_media(&options, media.as_ref(), &bar).await?;
    bar.finish_and_clear();
    if let Some(media) = &media {
        // The workers fetch after the acks; stay until they have.
        let until = std::time::Instant::now() + args.linger;
        while media.pending() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if media.pending() > 0 && !json {
            println!(
                "{} recording(s) not fetched within {:?}",
                media.pending(),
                args.linger
            );
        }
    }
    if json {
        print_json(&report)?;
    } else {
        println!(
            "{:<36} {:<16} {:<12} {:>5} {:>4} {:>9} {:>10}",
            "call", "to", "status", "steps", "legs", "callbacks", "recordings"
        );
        for call in &report.calls {
            let recordings = call
                .conversation
                .requested
                .iter()
                .filter(|r| r.params.get("RecordingSid").is_some())
                .filter(|r| r.params.get("TranscriptionSid").is_none())
                .count();
            println!(
                "{:<36} {:<16} {:<12} {:>5} {:>4} {:>9} {:>10}",
                call.call_sid(),
                call.script.to,
                call.legs
                    .first()
                    .map_or("-".to_owned(), |l| l.final_status().to_string()),
                call.conversation.voice_requests.len(),
                call.legs.len(),
                call.legs
                    .iter()
                    .map(|l| l.delivery_order.len())
                    .sum::<usize>()
                    + call.conversation.requested.len(),
                recordings,
            );
        }
        println!(
            "{} calls, {} voice requests, {} legs; {} callbacks acknowledged ({} duplicate deliveries, {} legs reordered, {} delayed, {} retries) in {:.1} s",
            report.calls.len(),
            report.voice_latency_us.len(),
            report.legs().count(),
            report.acknowledged,
            report.duplicate_deliveries,
            report.reordered_legs,
            report.delayed,
            report.retries_summary(),
            report.elapsed.as_secs_f64()
        );
        println!(
            "voice (TwiML) latency: p50 {:.1} ms, p99 {:.1} ms; callback ack latency: p50 {:.1} ms, p99 {:.1} ms",
            report.voice_latency_ms(50.0),
            report.voice_latency_ms(99.0),
            report.latency_ms(50.0),
            report.latency_ms(99.0)
        );
        for line in &report.voice_fallbacks {
            println!("fallback: {line}");
        }
        for line in report.voice_errors.iter().chain(&report.gave_up) {
            println!("error: {line}");
        }
    }
    let failed = report.gave_up.len() + report.voice_errors.len();
    if failed > 0 {
        eprintln!("{failed} requests failed");
    }
    Ok(exit(failed == 0))
}

async fn reconcile_command(
    stack: &Stack,
    since: Duration,
    api: &TwilioApiArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let credentials = stack.current_credentials().await?;
    let twilio = twilio_client(&credentials, api);
    let status = stack.queues(WorkQueue::Status).await?;
    let recording = stack.queues(WorkQueue::Recording).await?;
    let queue = |url: &str| voicehooks::queue::SqsEventQueue::new(stack.sqs.clone(), url);
    let (status_queue, recording_queue) = (queue(&status.queue_url), queue(&recording.queue_url));
    let report = voicehooks::reconcile::Reconciler {
        twilio: &twilio,
        calls: &stack.calls(),
        recordings: &stack.recordings(),
        status_queue: &status_queue,
        recording_queue: &recording_queue,
    }
    .run(time::OffsetDateTime::now_utc() - since)
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Twilio since {}: {} calls, {} recordings listed",
            report.since, report.calls_listed, report.recordings_listed
        );
        println!(
            "  final statuses queued  {}",
            report.statuses_repaired.len()
        );
        for (sid, status) in &report.statuses_repaired {
            println!("    {sid}  {status} (reconciled)");
        }
        println!(
            "  recordings queued      {}",
            report.recordings_queued.len()
        );
        for (call, recording) in &report.recordings_queued {
            println!("    {call}  {recording}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Twilio's REST API with the account's credentials from the stack's secret.
fn twilio_client(
    credentials: &voicehooks::secrets::TwilioCredentials,
    api: &TwilioApiArgs,
) -> voicehooks::twilio::rest::RestClient {
    voicehooks::twilio::rest::RestClient::for_account(
        reqwest::Client::new(),
        &api.api_base,
        credentials,
    )
}

/// Exit code of `numbers check` and `apply --dry-run` when something drifted.
const DRIFT: u8 = 2;

async fn numbers_command(
    stack: &Stack,
    command: NumbersCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (api, only, apply, dry_run) = match command {
        NumbersCommand::Check(api) => (api, Vec::new(), false, true),
        NumbersCommand::Apply {
            numbers,
            dry_run,
            api,
        } => (api, numbers, true, dry_run),
    };
    let credentials = stack.current_credentials().await?;
    let twilio = twilio_client(&credentials, &api);
    let base = stack.public_base_url().await.ok_or_else(|| {
        anyhow::anyhow!(
            "the stack's public base URL is unknown: no deployed webhook-status, and VOICEHOOKS_PUBLIC_BASE_URL is not set"
        )
    })?;
    let expected = numbers::Expected::for_base(&base.url);
    let app = credentials.twiml_app_sid.as_deref();
    let report = numbers::check(&twilio, &credentials.account_sid, &expected, app).await?;
    if !apply {
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", numbers::render(&report));
        }
        return Ok(if report.in_sync() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(DRIFT)
        });
    }
    let selected: Vec<&numbers::Wired> = numbers::selected(&report, &only).collect();
    if dry_run {
        if json {
            println!("{}", serde_json::to_string_pretty(&selected)?);
        } else {
            print!(
                "{}",
                numbers::render_changes(selected.iter().copied(), true)
            );
        }
        return Ok(if selected.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(DRIFT)
        });
    }
    let changed = numbers::apply(&twilio, &report, &only).await?;
    // Read back: Twilio is the word on what is now wired.
    let after = numbers::check(&twilio, &credentials.account_sid, &expected, app).await?;
    let still: Vec<&numbers::Wired> = numbers::selected(&after, &only).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"changed": changed, "still_drifted": still})
            )?
        );
    } else {
        print!("{}", numbers::render_changes(changed.iter(), false));
        println!("  {} changed; {} still drifted", changed.len(), still.len());
    }
    Ok(exit(still.is_empty()))
}

async fn smoke_command(stack: &Stack, args: SmokeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let current = stack.current_credentials().await?;
    let twilio = Twilio::with_routes(args.routes, &current.auth_token, Duration::from_secs(15))?;
    let report = smoke::run(
        stack,
        &twilio,
        &SmokeOptions {
            base_url: args.base_url,
            account_sid: current.account_sid.clone(),
            to: args.to,
            timeout: args.timeout,
        },
    )
    .await;
    if json {
        print_json(&report)?;
    } else if report.ok() {
        println!(
            "smoke call {}: TwiML in {:.0} ms, 4 callbacks acknowledged (p50 {:.0} ms), in the table after {:.0} ms: flow {}, status {}, {} events",
            report.call_sid,
            report.twiml_ms.unwrap_or_default(),
            simulate::percentile(&report.ack_us, 50.0) as f64 / 1e3,
            report.landed_after_ms.unwrap_or_default(),
            report.flow.as_deref().unwrap_or("-"),
            report.final_status.as_deref().unwrap_or("-"),
            report.events_stored
        );
    } else {
        println!("smoke call {} FAILED:", report.call_sid);
        report.problems.iter().for_each(|p| println!("  {p}"));
    }
    Ok(exit(report.ok()))
}

#[derive(Subcommand)]
enum NumbersCommand {
    /// Every number and the TwiML App: VoiceUrl, VoiceFallbackUrl and StatusCallback with
    /// their methods, each compared with the stack's output (a wrong URL, GET instead of
    /// POST, a missing fallback or status callback, missing connection overrides).
    ///
    /// Example: voicectl numbers check --json
    #[command(verbatim_doc_comment)]
    Check(TwilioApiArgs),
    /// Shows the diff, then points the drifted numbers and App at the stack.
    ///
    /// Examples:
    ///   voicectl numbers apply --dry-run
    ///   voicectl numbers apply --number +14155550100 --number +14155550101
    #[command(verbatim_doc_comment)]
    Apply {
        /// Only these numbers (E.164) or SIDs (PN…, AP…); repeatable.
        #[arg(long = "number")]
        numbers: Vec<String>,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: TwilioApiArgs,
    },
}

#[derive(Args)]
struct TwilioApiArgs {
    /// Twilio's REST API (the stand-in's on the local stack).
    #[arg(long, env = "TWILIO_API_BASE", default_value = voicehooks::twilio::rest::API_BASE)]
    api_base: String,
}

#[derive(Subcommand)]
enum FlowsCommand {
    /// Check a flows file; every problem is printed with its line.
    ///
    /// Example: voicectl flows check --file config/flows.toml
    #[command(verbatim_doc_comment)]
    Check {
        #[arg(long, default_value = flows::BUILT_IN_PATH)]
        file: PathBuf,
    },
    /// Print the TwiML one step of a call gets.
    ///
    /// Examples:
    ///   voicectl flows twiml --to +14155550100                  # a new call to this number
    ///   voicectl flows twiml --from client:alice --to +16285550199   # a softphone call
    ///   voicectl flows twiml --step menu --flow main-menu --digits 9 --invalid 2
    ///   voicectl flows twiml --step dial --flow sales --dial-status busy
    #[command(verbatim_doc_comment)]
    Twiml(TwimlArgs),
}

#[derive(Args)]
struct TwimlArgs {
    #[arg(long, default_value = flows::BUILT_IN_PATH)]
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = StepKind::Enter)]
    step: StepKind,
    /// The flow to run (default for `enter`: the one the numbers route to).
    #[arg(long)]
    flow: Option<String>,
    /// The number called.
    #[arg(long, default_value = "+14155550100")]
    to: String,
    /// The caller (`client:name` for a softphone).
    #[arg(long, default_value = "+16285550111")]
    from: String,
    /// Keys pressed at the menu (none: silence).
    #[arg(long)]
    digits: Option<String>,
    /// What the caller said at the menu.
    #[arg(long)]
    speech: Option<String>,
    /// Menu retries so far.
    #[arg(long, default_value_t = 0)]
    no_input: u32,
    #[arg(long, default_value_t = 0)]
    invalid: u32,
    /// How the Dial ended: completed, busy, no-answer, failed, canceled.
    #[arg(long, default_value = "completed")]
    dial_status: String,
    #[arg(long, default_value = local::PUBLIC_BASE_URL)]
    base_url: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum StepKind {
    /// A new call (`/twilio/voice`).
    Enter,
    /// A menu's Gather answered (`/twilio/voice/menu`).
    Menu,
    /// A Dial ended (`/twilio/voice/dial`).
    Dial,
    /// A voicemail was left (`/twilio/voice/recorded`).
    Recorded,
}

fn load(file: &PathBuf) -> anyhow::Result<Result<Flows, flows::FlowsError>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(Flows::parse(&text, &file.display().to_string()))
}

fn twiml(args: TwimlArgs) -> anyhow::Result<ExitCode> {
    let flows = match load(&args.file)? {
        Ok(flows) => flows,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let named = || {
        args.flow
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--flow is needed for this step"))
    };
    let step = match args.step {
        StepKind::Enter => Step::Enter {
            flow: args.flow.clone(),
        },
        StepKind::Menu => Step::Menu {
            flow: named()?,
            no_input: args.no_input,
            invalid: args.invalid,
        },
        StepKind::Dial => Step::DialDone { flow: named()? },
        StepKind::Recorded => Step::Recorded { flow: named()? },
    };
    let mut params = vec![
        ("CallSid", "CA00000000000000000000000000000000".to_owned()),
        ("AccountSid", local::ACCOUNT_SID.to_owned()),
        ("From", args.from.clone()),
        ("To", args.to.clone()),
        ("DialCallStatus", args.dial_status.clone()),
    ];
    params.extend(args.digits.clone().map(|d| ("Digits", d)));
    params.extend(args.speech.clone().map(|s| ("SpeechResult", s)));
    let params: Params = params.into_iter().collect();
    let rendered = flows.render(&step, &params, &Urls::new(&args.base_url));
    eprintln!("flow: {}  outcome: {}", rendered.flow, rendered.outcome);
    if let Some(problem) = &rendered.problem {
        eprintln!("problem: {problem}");
    }
    println!("{}", rendered.twiml.to_pretty_xml());
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            if let Some(hint) = hint(&format!("{e:#}")) {
                eprintln!("  {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What to do about the errors a new operator meets first.
fn hint(error: &str) -> Option<String> {
    let local = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|url| url.contains("127.0.0.1") || url.contains("localhost"));
    if let Some(endpoint) = local
        && (error.contains("dispatch failure") || error.contains("onnect"))
    {
        return Some(format!(
            "no local stack answers at {endpoint}: is `make up` still running? \
             (.local/stack.env is from the last one)"
        ));
    }
    (error.contains("credentials")).then(|| {
        "no AWS credentials. For the local stack: `make up` in another terminal, then \
         `make dlq` (or load .local/stack.env: set -a; . .local/stack.env; set +a). For a \
         deployed stack: your AWS credentials and region, and --stack <name>."
            .to_owned()
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let stack = || Stack::connect(&cli.stack);
    match cli.command {
        Command::Dlq(command) => dlq_command(&stack().await, command, json).await,
        Command::Replay(command) => replay_command(&stack().await, command, json).await,
        Command::Call { call_sid } => {
            let view = timeline::load(&stack().await, &call_sid).await?;
            if json {
                print_json(&view)?;
            } else {
                print!("{}", timeline::render(&view));
            }
            Ok(exit(view.call.is_some() || !view.recordings.is_empty()))
        }
        Command::Sign(args) => {
            let settings = args.signature_settings.as_deref();
            let algorithm = Algorithm::from_settings(settings)
                .ok_or_else(|| anyhow::anyhow!("--signature-settings: unknown algorithm"))?;
            let token = match (args.auth_token, algorithm) {
                (Some(token), _) => token,
                (None, Algorithm::HmacSha1) => stack().await.signing_token(None).await?,
                (None, Algorithm::HmacSha256) => {
                    let sid = settings.and_then(signature::settings_key);
                    let credentials = stack().await.current_credentials().await?;
                    credentials
                        .shared_key_secrets(sid)
                        .next()
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            anyhow::anyhow!("the stack's secret has no such webhook_shared_keys")
                        })?
                }
            };
            let signed = signing::sign_with(algorithm, &token, &args.request.request()?);
            if json {
                print_json(&signed)?;
            } else {
                if Some(&signed.url) != args.request.url.as_ref() {
                    println!("url: {}", signed.url);
                }
                println!("{}", signed.signature);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(VerifyArgs {
            batch: Some(batch), ..
        }) => verify_batch(&batch),
        Command::Verify(args) => verify(args, json, stack()).await,
        Command::Simulate(args) => simulate(args, json).await,
        Command::Smoke(args) => smoke_command(&stack().await, args, json).await,
        Command::Numbers(command) => numbers_command(&stack().await, command, json).await,
        Command::Reconcile { since, api } => {
            reconcile_command(&stack().await, since, &api, json).await
        }
        Command::Flows(FlowsCommand::Check { file }) => Ok(match load(&file)? {
            Ok(flows) => {
                println!("{}: {} flows, valid", file.display(), flows.names().count());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }),
        Command::Flows(FlowsCommand::Twiml(args)) => twiml(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The brief asks for an example in every command's `--help`, groups included.
    #[test]
    fn every_command_has_an_example_in_its_help() {
        fn walk(command: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
            let help = command.render_long_help().to_string();
            if !help.contains("Example") {
                missing.push(path.to_owned());
            }
            for sub in command.get_subcommands_mut() {
                let path = format!("{path} {}", sub.get_name());
                walk(sub, &path, missing);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&mut cli, "voicectl", &mut missing);
        // clap's generated `help` subcommands explain themselves.
        missing.retain(|path| !path.ends_with(" help") && !path.contains(" help "));
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
