//! `voicectl`: see `voicectl --help`.

use clap::{Parser, Subcommand};
use shared::config::local;
use voicectl::simulate::{self, SimulateOptions};

#[derive(Parser)]
#[command(
    name = "voicectl",
    version,
    about = "Operate voicehooks: simulate Twilio, and more to come."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play calls' status callbacks at a webhook the way Twilio does, with duplicates and
    /// reordering, and print acknowledgement latency.
    ///
    /// Example (local stack): voicectl simulate --target http://127.0.0.1:9000/lambda-url/webhook-status/twilio/status --calls 50
    Simulate {
        /// Where to send the callbacks.
        #[arg(long)]
        target: String,
        /// The URL Twilio was given, which signatures cover (default: the local public URL).
        #[arg(long, default_value_t = format!("{}/twilio/status", local::PUBLIC_BASE_URL))]
        public_url: String,
        #[arg(long, default_value_t = 20)]
        calls: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Share of callbacks delivered twice.
        #[arg(long, default_value_t = 0.1)]
        duplicates: f64,
        /// Share of calls whose callbacks arrive out of order.
        #[arg(long, default_value_t = 0.2)]
        reorder: f64,
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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate {
            target,
            public_url,
            calls,
            seed,
            concurrency,
            duplicates,
            reorder,
            max_attempts,
            account_sid,
            auth_token,
            json,
        } => {
            let options = SimulateOptions {
                calls,
                seed,
                concurrency,
                duplicate_rate: duplicates,
                reorder_rate: reorder,
                max_attempts,
                target_url: target,
                public_url,
                account_sid,
                auth_token,
            };
            let report = simulate::run(&options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} calls, {} callbacks acknowledged ({} duplicate deliveries, {} calls reordered, {} retries) in {:.1} s",
                    report.calls.len(),
                    report.acknowledged,
                    report.duplicate_deliveries,
                    report.reordered_calls,
                    report.retries,
                    report.elapsed.as_secs_f64()
                );
                println!(
                    "ack latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
                    report.latency_ms(50.0),
                    report.latency_ms(90.0),
                    report.latency_ms(99.0)
                );
                for line in &report.undelivered {
                    println!("undelivered: {line}");
                }
            }
            anyhow::ensure!(
                report.undelivered.is_empty(),
                "{} callbacks were not acknowledged",
                report.undelivered.len()
            );
            Ok(())
        }
    }
}
