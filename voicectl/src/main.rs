//! `voicectl`: see `voicectl --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::config::local;
use shared::flows::{self, Flows, Step, Urls};
use shared::twilio::Params;
use voicectl::simulate::{self, SimulateOptions};

#[derive(Parser)]
#[command(
    name = "voicectl",
    version,
    about = "Operate voicehooks: preview call flows, simulate Twilio."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play calls the way Twilio does: ask the voice webhook, follow its TwiML, then send
    /// every status callback (with duplicates, reordering and retries); print latencies.
    ///
    /// Example (the local stack from `make up`, functions on port 9000):
    ///   voicectl simulate --calls 50 \
    ///     --route https://hooks.voicehooks.test/twilio/voice=http://127.0.0.1:9000/lambda-url/webhook-voice/twilio/voice \
    ///     --route https://hooks.voicehooks.test/twilio/status=http://127.0.0.1:9000/lambda-url/webhook-status/twilio/status
    Simulate(SimulateArgs),
    /// Check the call flows, or print the TwiML a call would get, before deploying.
    #[command(subcommand)]
    Flows(FlowsCommand),
}

#[derive(Args)]
struct SimulateArgs {
    /// The public base URL Twilio was given; signatures cover it.
    #[arg(long, default_value = local::PUBLIC_BASE_URL)]
    base_url: String,
    /// PUBLIC_PREFIX=TARGET_PREFIX: deliver requests for a public URL to another place (as
    /// API Gateway routes them). Without any, requests go to the public URLs themselves.
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(String, String)>,
    /// A number callers dial (repeatable); default: every number in the flows file.
    #[arg(long = "number")]
    numbers: Vec<String>,
    #[arg(long, default_value_t = 20)]
    calls: usize,
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
    /// Share of calls placed from a browser softphone.
    #[arg(long, default_value_t = 0.1)]
    softphone: f64,
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = local::ACCOUNT_SID)]
    account_sid: String,
    /// The auth token to sign with (read from the environment so it stays out of `ps`).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = local::AUTH_TOKEN, hide_default_value = true, hide_env_values = true)]
    auth_token: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(public, target)| (public.to_owned(), target.to_owned()))
        .ok_or_else(|| "expected PUBLIC_PREFIX=TARGET_PREFIX".into())
}

#[derive(Subcommand)]
enum FlowsCommand {
    /// Check a flows file; every problem is printed with its line.
    ///
    /// Example: voicectl flows check --file config/flows.toml
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

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let numbers = if args.numbers.is_empty() {
        let flows = Flows::built_in().map_err(|e| anyhow::anyhow!("{e}"))?;
        flows.numbers().map(|(n, _)| n.to_owned()).collect()
    } else {
        args.numbers
    };
    let options = SimulateOptions {
        calls: args.calls,
        seed: args.seed,
        concurrency: args.concurrency,
        duplicate_rate: args.duplicates,
        reorder_rate: args.reorder,
        max_attempts: args.max_attempts,
        public_base_url: args.base_url,
        routes: args.routes,
        numbers,
        softphone_rate: args.softphone,
        account_sid: args.account_sid,
        auth_token: args.auth_token,
        media_not_ready_rate: 0.2,
        max_media_secs: 20,
    };
    let report = simulate::run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} calls, {} voice requests, {} legs; {} callbacks acknowledged ({} duplicate deliveries, {} legs reordered, {} retries) in {:.1} s",
            report.calls.len(),
            report.voice_latency_us.len(),
            report.legs().count(),
            report.acknowledged,
            report.duplicate_deliveries,
            report.reordered_legs,
            report.retries,
            report.elapsed.as_secs_f64()
        );
        println!(
            "voice (TwiML) latency: p50 {:.1} ms, p99 {:.1} ms; callback ack latency: p50 {:.1} ms, p99 {:.1} ms",
            report.voice_latency_ms(50.0),
            report.voice_latency_ms(99.0),
            report.latency_ms(50.0),
            report.latency_ms(99.0)
        );
        for line in report.voice_errors.iter().chain(&report.undelivered) {
            println!("error: {line}");
        }
    }
    let failed = report.undelivered.len() + report.voice_errors.len();
    if failed > 0 {
        eprintln!("{failed} requests failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Simulate(args) => simulate(args).await,
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
