//! `voicectl smoke`: one synthetic call through a stack, checked in its table.

use std::process::ExitCode;
use std::time::Duration;

use voicectl::connect::Stack;
use voicectl::simulate::{self, Twilio};
use voicectl::smoke::{self, SmokeOptions, SmokeReport};

use super::{Output, Report, exit, json_of, push_line};
use crate::cli::SmokeArgs;

pub async fn run(stack: &Stack, args: SmokeArgs, out: &Output) -> anyhow::Result<ExitCode> {
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
    out.print(&report)?;
    Ok(exit(report.ok()))
}

impl Report for SmokeReport {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if self.ok() {
            push_line!(
                out,
                "smoke call {}: TwiML in {:.0} ms, 4 callbacks acknowledged (p50 {:.0} ms), in the table after {:.0} ms: flow {}, status {}, {} events",
                self.call_sid,
                self.twiml_ms.unwrap_or_default(),
                simulate::percentile(&self.ack_us, 50.0) as f64 / 1e3,
                self.landed_after_ms.unwrap_or_default(),
                self.flow.as_deref().unwrap_or("-"),
                self.final_status.as_deref().unwrap_or("-"),
                self.events_stored
            );
        } else {
            push_line!(out, "smoke call {} FAILED:", self.call_sid);
            for problem in &self.problems {
                push_line!(out, "  {problem}");
            }
        }
        out
    }
}
