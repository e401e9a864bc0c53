//! `devstack`: run the local stack. `make demo` runs `devstack demo`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use devstack::bench::{self, BenchOptions};
use devstack::chaos::{self, ChaosOptions};
use devstack::demo::{self, DemoOptions};
use devstack::{LocalStack, StackOptions, sample_events, workspace::Workspace};
use voicehooks::config::local;

#[derive(Parser)]
#[command(
    name = "devstack",
    about = "The voicehooks local stack: moto + the real functions under cargo-lambda."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play calls through the local stack, check every call's stored state against the
    /// stand-in's ground truth, print the table; exit 1 on any mismatch.
    ///
    /// Example: devstack demo --calls 300 --seed 42
    Demo {
        #[arg(long, default_value_t = 300)]
        calls: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 0.2)]
        duplicates: f64,
        #[arg(long, default_value_t = 0.3)]
        reorder: f64,
    },
    /// The demo with the fault mix turned up (see devstack/src/chaos.rs): duplicates,
    /// reordering, refused enqueues and spills, S3/DynamoDB/SQS/Transcribe faults, a minute
    /// of SQS down and one of Secrets Manager down, workers killed mid-batch, poisoned calls
    /// redriven from the DLQs after the fix; Twilio delivering as it does (each URL's
    /// overrides). Checks every call against the ground truth, prints the figures; exit 1 on
    /// any mismatch.
    ///
    /// Example: devstack chaos --calls 1000 --seed 7
    Chaos {
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Calls started per second at most (the local emulator slows down with a backlog).
        #[arg(long, default_value_t = 3.0)]
        rate: f64,
        /// Worker instances killed with SIGKILL while they hold a batch.
        #[arg(long, default_value_t = 6)]
        kills: usize,
        /// Calls whose DynamoDB writes fail until the fix, so their events rest in the DLQs.
        #[arg(long, default_value_t = 3)]
        poison: usize,
        /// Run the functions' release builds (`cargo build --release`), as Lambda runs them.
        #[arg(long)]
        release: bool,
    },
    /// `make bench`'s report: ingress compute beside twilio-node, cold starts and bootstrap
    /// sizes, AWS calls per event and their cost, end-to-end acks at rising rates; each
    /// figure beside its goal. Needs `cargo bench -p voicehooks --bench ingress`, release and
    /// arm64 builds first (the Makefile's bench target does all of it).
    ///
    /// Example: devstack bench --calls 100 --rates 1,2,4,8
    Bench {
        /// Calls of the in-order run that AWS calls per event are counted in.
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Calls started per second, one end-to-end run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
        rates: Vec<f64>,
        /// Seconds of calls at each rate.
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        /// Cold starts per function; the median is reported.
        #[arg(long, default_value_t = 5)]
        cold_starts: usize,
        /// Only these parts of the report (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<bench::Part>,
    },
    /// Start the local stack and keep it up until Ctrl-C, printing its endpoints. It
    /// writes .local/stack.env (the emulator's endpoint, the stack's name and routes) for
    /// voicectl; `make dlq` and `make replay` load it.
    ///
    /// Example: devstack up, then in another shell:
    /// cargo lambda invoke webhook-status --invoke-address 127.0.0.1 --data-file events/webhook-status/ringing.json
    Up {
        /// Port of the Lambda APIs (cargo-lambda's default, so `cargo lambda invoke` finds it).
        #[arg(long, default_value_t = 9000)]
        lambda_port: u16,
        /// The loopback port the recording worker fetches stand-in media from: where
        /// `voicectl simulate --serve-media` serves it.
        #[arg(long, default_value_t = 9100)]
        media_port: u16,
    },
    /// Rewrite the sample events under events/ (signed for the local token and public URL).
    Events,
    /// `sam deploy` of what `sam build` made, against a fresh emulator (`make
    /// deploy-rehearsal` builds first): packaging, the change set with the SAM transform,
    /// its execution, and the stack read back.
    ///
    /// Example: make deploy-rehearsal
    RehearseDeploy {
        #[arg(long, default_value = ".aws-sam/build")]
        build_dir: std::path::PathBuf,
    },
    /// Incident rehearsal on `make up`'s stack (.local/stack.env loaded, as `make
    /// break-table` does): delete the calls table, so the status worker fails the way it
    /// would on AWS after a bad role or key-policy change, while the webhooks keep accepting.
    ///
    /// Example: make break-table
    BreakTable,
    /// The rehearsal's fix: the calls table back, empty, as the template declares it.
    ///
    /// Example: make restore-table
    RestoreTable,
}

/// The local stack's calls table, refusing anything but the local emulator.
async fn local_table() -> anyhow::Result<(aws_config::SdkConfig, String, String)> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !endpoint.starts_with("http://127.0.0.1:") {
        anyhow::bail!(
            "no local stack: AWS_ENDPOINT_URL is {endpoint:?}. Start one with `make up` and use \
             `make break-table` / `make restore-table` (they load .local/stack.env); these never \
             touch a deployed stack"
        );
    }
    let stack = std::env::var("VOICEHOOKS_STACK").unwrap_or_else(|_| local::STACK_NAME.into());
    let table = voicehooks::stack_names::StackNames::new(&stack).calls_table();
    // As the account's administrator (`make up` writes its key beside the operator's).
    let admin = match (
        std::env::var("DEVSTACK_ADMIN_ACCESS_KEY_ID"),
        std::env::var("DEVSTACK_ADMIN_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) => Some(aws_credential_types::Credentials::new(
            id,
            secret,
            None,
            None,
            "devstack-admin",
        )),
        _ => None,
    };
    let sdk = voicehooks::aws::sdk_config().await;
    let sdk = match admin {
        Some(admin) => sdk
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(admin),
            )
            .build(),
        None => sdk,
    };
    Ok((sdk, stack, table))
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    // The stack's processes run in their own process groups, out of reach of the terminal's
    // Ctrl-C: dropping the run (and with it the stack) is what stops them. `up` waits for
    // Ctrl-C itself, to tidy up after it.
    let command = Cli::parse().command;
    if matches!(command, Command::Up { .. }) {
        return run(command).await;
    }
    tokio::select! {
        result = run(command) => result,
        () = interrupted() => {
            eprintln!("interrupted; the local stack is stopped");
            Ok(ExitCode::from(130))
        }
    }
}

/// Ctrl-C, or a `kill` (SIGTERM): either way the run is dropped and with it the stack.
async fn interrupted() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { terminate.as_mut()?.recv().await } => {}
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo {
            calls,
            seed,
            concurrency,
            duplicates,
            reorder,
        } => {
            let ok = demo::run(DemoOptions {
                calls,
                seed,
                concurrency,
                duplicate_rate: duplicates,
                reorder_rate: reorder,
            })
            .await?;
            Ok(exit_code(ok))
        }
        Command::Chaos {
            calls,
            seed,
            concurrency,
            rate,
            kills,
            poison,
            release,
        } => {
            let ok = chaos::run(ChaosOptions {
                release,
                calls,
                seed,
                concurrency,
                rate: Some(rate).filter(|r| *r > 0.0),
                kills,
                poisoned_calls: poison,
                outages: ChaosOptions::standard_outages(),
                slowdowns: ChaosOptions::standard_slowdowns(),
            })
            .await?;
            Ok(exit_code(ok))
        }
        Command::Bench {
            calls,
            rates,
            seconds,
            cold_starts,
            only,
        } => {
            bench::run(BenchOptions {
                parts: only,
                calls,
                rates,
                seconds_per_rate: seconds,
                cold_starts,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            lambda_port,
            media_port,
        } => up(lambda_port, media_port).await,
        Command::BreakTable => {
            let (sdk, _, table) = local_table().await?;
            devstack::deploy::break_table(&sdk, &table).await?;
            println!("{table} deleted: the status worker now fails and retries, then dead-letters");
            Ok(ExitCode::SUCCESS)
        }
        Command::RestoreTable => {
            let (sdk, stack, table) = local_table().await?;
            devstack::deploy::restore_table(&sdk, &stack, &table).await?;
            println!("{table} is back (empty, as the template declares it)");
            Ok(ExitCode::SUCCESS)
        }
        Command::RehearseDeploy { build_dir } => {
            devstack::rehearsal::rehearse(&build_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events => write_sample_events(),
    }
}

/// `exit 1` when a run found a mismatch.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `make up`: the stack until Ctrl-C, with what an operator needs printed and voicectl's
/// environment written to `.local/stack.env`.
async fn up(lambda_port: u16, media_port: u16) -> anyhow::Result<ExitCode> {
    let stack = LocalStack::start(StackOptions {
        label: "up".into(),
        lambda_port: Some(lambda_port),
        media_host: Some(format!("127.0.0.1:{media_port}")),
        ..Default::default()
    })
    .await?;
    let env_file = stack.workspace.root.join(".local/stack.env");
    std::fs::write(&env_file, stack.voicectl_env())?;
    println!("local stack up; Ctrl-C stops it");
    println!("  AWS emulator         {}", stack.emulator.endpoint);
    println!("  Lambda APIs          {}", stack.functions.endpoint());
    for (public, target) in stack.routes() {
        println!("  webhook              {target}\n                         (signed for {public})");
    }
    println!(
        "  status queue         {}",
        stack.resources.status_queue_url
    );
    println!("  status DLQ           {}", stack.resources.status_dlq_url);
    println!("  calls table          {}", stack.resources.calls_table);
    println!("  logs                 {}", stack.log_dir.display());
    println!("  voicectl environment {}", env_file.display());
    // A bearer token from the local identity provider, good for an hour.
    println!(
        "  softphone token      curl -X POST -H 'Authorization: Bearer {}' {}",
        stack.issuer.bearer("agent-1", serde_json::json!({})),
        stack.softphone_token_url()
    );
    interrupted().await;
    let _ = std::fs::remove_file(&env_file);
    stack.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// `devstack events`: every sample event rendered into `events/`.
fn write_sample_events() -> anyhow::Result<ExitCode> {
    let root = Workspace::locate().events();
    for event in sample_events::all() {
        let path = root.join(&event.path);
        std::fs::create_dir_all(path.parent().expect("events have a folder"))?;
        std::fs::write(&path, sample_events::render(&event))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
