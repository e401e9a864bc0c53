//! `voicectl`: see `voicectl --help`. The command line is defined in `cli`, each command
//! carried out and printed in `commands`; the work itself is the library's.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use voicectl::connect::Stack;

use cli::{Cli, Command, FlowsCommand, VerifyArgs};
use commands::Output;

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
    let out = &Output { json: cli.json };
    let stack = || Stack::connect(&cli.stack);
    match cli.command {
        Command::Dlq(command) => commands::dlq::run(&stack().await, command, out).await,
        Command::Replay(command) => commands::replay::run(&stack().await, command, out).await,
        Command::Call { call_sid } => commands::call::run(&stack().await, &call_sid, out).await,
        Command::Sign(args) => commands::signatures::sign(args, stack(), out).await,
        Command::Verify(VerifyArgs {
            batch: Some(batch), ..
        }) => commands::signatures::verify_batch(&batch),
        Command::Verify(args) => commands::signatures::verify(args, stack(), out).await,
        Command::Simulate(args) => commands::simulate::run(args, out).await,
        Command::Smoke(args) => commands::smoke::run(&stack().await, args, out).await,
        Command::Numbers(command) => commands::numbers::run(&stack().await, command, out).await,
        Command::Reconcile { since, api } => {
            commands::reconcile::run(&stack().await, since, &api, out).await
        }
        Command::Flows(FlowsCommand::Check { file }) => commands::flows::check(&file),
        Command::Flows(FlowsCommand::Twiml(args)) => commands::flows::twiml(&args),
    }
}
