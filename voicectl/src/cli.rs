//! The command line: every command, argument and `--help` text, defined once here (clap
//! derives parsing and help from it); `commands` carries each out.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use voicectl::connect::DEFAULT_STACK;
use voicectl::signing::Request;
use voicehooks::config::local;
use voicehooks::flows;
use voicehooks::stack_names::WorkQueue;
use voicehooks::twilio::Params;

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
pub struct Cli {
    /// The stack's name (`sam deploy --stack-name`); `voicehooks-local` for `make up`.
    #[arg(long, global = true, env = "VOICEHOOKS_STACK", default_value = DEFAULT_STACK)]
    pub stack: String,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub fn work_queue_arg() -> impl clap::builder::TypedValueParser<Value = WorkQueue> {
    clap::builder::PossibleValuesParser::new(WorkQueue::ALL.map(WorkQueue::as_str)).map(|name| {
        WorkQueue::ALL
            .into_iter()
            .find(|q| q.as_str() == name)
            .expect("clap admits only the possible values")
    })
}

/// The queue asked for, or all three.
pub fn work_queues(queue: Option<WorkQueue>) -> Vec<WorkQueue> {
    queue.map_or_else(|| WorkQueue::ALL.to_vec(), |q| vec![q])
}

#[derive(Subcommand)]
pub enum DlqCommand {
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
pub enum ReplayCommand {
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
pub struct RequestArgs {
    /// The URL Twilio requested (scheme, host, path and query as Twilio was given them).
    #[arg(long)]
    pub url: Option<String>,
    /// A form parameter NAME=VALUE (repeatable, in order).
    #[arg(short = 'p', long = "param", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// The raw form body, as captured (`A=1&B=2`).
    #[arg(long, conflicts_with = "body_file")]
    pub form: Option<String>,
    /// A JSON body, as captured (the URL carries its bodySHA256).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
}

impl RequestArgs {
    pub fn request(&self) -> anyhow::Result<Request> {
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
pub struct SignArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Sign with this token (or SharedKey secret) instead of the stack secret's.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Sign as a SharedKey does: `key=<sid>,algorithm=HMAC_SHA256` (the
    /// X-Twilio-Webhooks-Signature-Settings header's value), with that key's secret.
    #[arg(long)]
    pub signature_settings: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Read JSON lines (from FILE, or stdin with `-`) and print one verdict line each.
    #[arg(long, num_args = 0..=1, default_missing_value = "-", conflicts_with_all = ["url", "signature"])]
    pub batch: Option<PathBuf>,
    #[command(flatten)]
    pub request: RequestArgs,
    /// The X-Twilio-Signature header as received.
    #[arg(long, required_unless_present = "batch")]
    pub signature: Option<String>,
    /// Check this token (or SharedKey secret) instead of the stack secret's current and
    /// previous ones.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// The X-Twilio-Webhooks-Signature-Settings header as received: a SharedKey signature,
    /// checked with the secret's webhook_shared_keys (or --auth-token as the key's secret).
    #[arg(long)]
    pub signature_settings: Option<String>,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// The public base URL Twilio was given; signatures cover it.
    #[arg(long, env = "VOICEHOOKS_PUBLIC_BASE_URL", default_value = local::PUBLIC_BASE_URL)]
    pub base_url: String,
    /// PUBLIC_PREFIX=TARGET_PREFIX: deliver requests for a public URL to another place (as
    /// API Gateway routes them). Without any, requests go to the public URLs themselves.
    #[arg(long = "route", value_parser = parse_route, env = "VOICEHOOKS_ROUTES", value_delimiter = ',')]
    pub routes: Vec<(String, String)>,
    /// A number callers dial (repeatable); default: every number in the flows file.
    #[arg(long = "number")]
    pub numbers: Vec<String>,
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Calls started per second at most (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Share of callbacks delivered twice.
    #[arg(long, default_value_t = 0.1)]
    pub duplicates: f64,
    /// Share of legs whose callbacks arrive out of order.
    #[arg(long, default_value_t = 0.2)]
    pub reorder: f64,
    /// Share of callbacks held back before delivery, by up to --max-delay.
    #[arg(long, default_value_t = 0.0)]
    pub delays: f64,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub max_delay: Duration,
    /// Share of calls placed from a browser softphone.
    #[arg(long, default_value_t = 0.1)]
    pub softphone: f64,
    /// The numbers have no VoiceFallbackUrl: a failed voice request is Twilio's
    /// application error for the caller. (Deliveries follow each URL's connection
    /// overrides, as Twilio does: attempts, timeouts and what is retried.)
    #[arg(long)]
    pub no_voice_fallback: bool,
    /// Serve the calls' recordings (as Twilio's API does) on 127.0.0.1:--media-port and
    /// point the recording callbacks there; keep serving until every one was fetched.
    #[arg(long)]
    pub serve_media: bool,
    /// The port `make up`'s recording worker fetches stand-in media from.
    #[arg(long, default_value_t = 9100)]
    pub media_port: u16,
    /// Share of recordings whose media answers 404 at first.
    #[arg(long, default_value_t = 0.2)]
    pub media_not_ready: f64,
    /// With --serve-media: how long to keep serving after the calls, at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub linger: Duration,
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = local::ACCOUNT_SID)]
    pub account_sid: String,
    /// The auth token to sign with (read from the environment so it stays out of `ps`).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = local::AUTH_TOKEN, hide_default_value = true, hide_env_values = true)]
    pub auth_token: String,
    /// With --serve-media: an API key the media also accepts (the worker uses the secret's
    /// API key when it has one, as Twilio recommends).
    #[arg(long, env = "TWILIO_API_KEY_SID", default_value = local::API_KEY_SID)]
    pub api_key_sid: String,
    #[arg(long, env = "TWILIO_API_KEY_SECRET", default_value = local::API_KEY_SECRET, hide_default_value = true, hide_env_values = true)]
    pub api_key_secret: String,
}

#[derive(Args)]
pub struct SmokeArgs {
    /// The public base URL Twilio is given (the stack's `WebhookBaseUrl` output).
    #[arg(long, env = "VOICEHOOKS_PUBLIC_BASE_URL")]
    pub base_url: String,
    /// PUBLIC_PREFIX=TARGET_PREFIX, as for `simulate` (the local stack).
    #[arg(long = "route", value_parser = parse_route, env = "VOICEHOOKS_ROUTES", value_delimiter = ',')]
    pub routes: Vec<(String, String)>,
    /// The number the call dials.
    #[arg(long, default_value = "+14155550100")]
    pub to: String,
    /// How long to wait for the call to land in the table.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

pub fn parse_route(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(public, target)| (public.to_owned(), target.to_owned()))
        .ok_or_else(|| "expected PUBLIC_PREFIX=TARGET_PREFIX".into())
}

pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".into())
}

#[derive(Subcommand)]
pub enum NumbersCommand {
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
pub struct TwilioApiArgs {
    /// Twilio's REST API (the stand-in's on the local stack).
    #[arg(long, env = "TWILIO_API_BASE", default_value = voicehooks::twilio::rest::API_BASE)]
    pub api_base: String,
}

#[derive(Subcommand)]
pub enum FlowsCommand {
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
pub struct TwimlArgs {
    #[arg(long, default_value = flows::BUILT_IN_PATH)]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = StepKind::Enter)]
    pub step: StepKind,
    /// The flow to run (default for `enter`: the one the numbers route to).
    #[arg(long)]
    pub flow: Option<String>,
    /// The number called.
    #[arg(long, default_value = "+14155550100")]
    pub to: String,
    /// The caller (`client:name` for a softphone).
    #[arg(long, default_value = "+16285550111")]
    pub from: String,
    /// Keys pressed at the menu (none: silence).
    #[arg(long)]
    pub digits: Option<String>,
    /// What the caller said at the menu.
    #[arg(long)]
    pub speech: Option<String>,
    /// Menu retries so far.
    #[arg(long, default_value_t = 0)]
    pub no_input: u32,
    #[arg(long, default_value_t = 0)]
    pub invalid: u32,
    /// How the Dial ended: completed, busy, no-answer, failed, canceled.
    #[arg(long, default_value = "completed")]
    pub dial_status: String,
    #[arg(long, default_value = local::PUBLIC_BASE_URL)]
    pub base_url: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StepKind {
    /// A new call (`/twilio/voice`).
    Enter,
    /// A menu's Gather answered (`/twilio/voice/menu`).
    Menu,
    /// A Dial ended (`/twilio/voice/dial`).
    Dial,
    /// A voicemail was left (`/twilio/voice/recorded`).
    Recorded,
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
