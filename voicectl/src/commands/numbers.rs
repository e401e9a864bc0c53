//! `voicectl numbers`: the account's numbers and TwiML App against the stack's outputs,
//! through Twilio's REST API.

use std::process::ExitCode;

use serde::Serialize;
use voicectl::connect::Stack;
use voicectl::numbers::{self, NumbersReport, Wired};

use super::{Output, Report, exit, json_of, push_line};
use crate::cli::{NumbersCommand, TwilioApiArgs};

/// Exit code of `numbers check` and `apply --dry-run` when something drifted.
const DRIFT: u8 = 2;

pub async fn run(stack: &Stack, command: NumbersCommand, out: &Output) -> anyhow::Result<ExitCode> {
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
        out.print(&report)?;
        return Ok(drift_unless(report.in_sync()));
    }
    let selected: Vec<&Wired> = numbers::selected(&report, &only).collect();
    if dry_run {
        out.print(&DryRun(selected.clone()))?;
        return Ok(drift_unless(selected.is_empty()));
    }
    let changed = numbers::apply(&twilio, &report, &only).await?;
    // Read back: Twilio is the word on what is now wired.
    let after = numbers::check(&twilio, &credentials.account_sid, &expected, app).await?;
    let applied = Applied {
        changed: changed.iter().collect(),
        still_drifted: numbers::selected(&after, &only).collect(),
    };
    out.print(&applied)?;
    Ok(exit(applied.still_drifted.is_empty()))
}

fn drift_unless(in_sync: bool) -> ExitCode {
    if in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DRIFT)
    }
}

/// Twilio's REST API with the account's credentials from the stack's secret.
pub fn twilio_client(
    credentials: &voicehooks::secrets::TwilioCredentials,
    api: &TwilioApiArgs,
) -> voicehooks::twilio::rest::RestClient {
    voicehooks::twilio::rest::RestClient::for_account(
        reqwest::Client::new(),
        &api.api_base,
        credentials,
    )
}

impl Report for NumbersReport {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        numbers::render(self)
    }
}

/// `apply --dry-run`: what would change.
struct DryRun<'a>(Vec<&'a Wired>);

impl Report for DryRun<'_> {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.0)
    }

    fn text(&self) -> String {
        numbers::render_changes(self.0.iter().copied(), true)
    }
}

/// `apply`: what changed, and what Twilio still shows drifted after it.
#[derive(Serialize)]
struct Applied<'a> {
    changed: Vec<&'a Wired>,
    still_drifted: Vec<&'a Wired>,
}

impl Report for Applied<'_> {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        let mut out = numbers::render_changes(self.changed.iter().copied(), false);
        push_line!(
            out,
            "  {} changed; {} still drifted",
            self.changed.len(),
            self.still_drifted.len()
        );
        out
    }
}
