//! `voicectl replay`: event files to a webhook or a queue; calls rebuilt from their stored
//! events.

use std::process::ExitCode;
use std::time::Duration;

use voicectl::connect::Stack;
use voicectl::progress_bar;
use voicectl::replay::{self, CallReplay, Sent};
use voicectl::simulate::Twilio;

use super::{Output, Report, exit, json_of, push_line};
use crate::cli::ReplayCommand;

pub async fn run(stack: &Stack, command: ReplayCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        ReplayCommand::Files {
            paths,
            queue,
            url,
            routes,
            auth_token,
        } => {
            let items = replay::load(&paths)?;
            let bar = progress_bar(items.len() as u64, out.json);
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
            let files = FilesSent(sent);
            out.print(&files)?;
            Ok(exit(files.0.iter().all(|s| s.outcome != "refused")))
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
                out.print(&WouldReplay(call_sids))?;
                return Ok(ExitCode::SUCCESS);
            }
            let bar = progress_bar(call_sids.len() as u64, out.json);
            let results = CallsReplayed(replay::calls(stack, &call_sids, &bar).await);
            bar.finish_and_clear();
            out.print(&results)?;
            Ok(exit(results.0.iter().all(|r| r.error.is_none())))
        }
    }
}

/// `replay files`: each file's fate.
struct FilesSent(Vec<Sent>);

impl Report for FilesSent {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.0)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            push_line!(
                out,
                "{:<8} {}  {}{}",
                s.outcome,
                s.file.display(),
                s.to.as_deref()
                    .map_or(String::new(), |to| format!("→ {to}  ")),
                s.detail
            );
        }
        let count = |o: &str| self.0.iter().filter(|s| s.outcome == o).count();
        push_line!(
            out,
            "{} sent, {} refused, {} skipped",
            count("sent"),
            count("refused"),
            count("skipped")
        );
        out
    }
}

/// `replay calls --dry-run`: the calls a replay would rebuild.
struct WouldReplay(Vec<String>);

impl Report for WouldReplay {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.0)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        push_line!(out, "would replay {} call(s):", self.0.len());
        for sid in &self.0 {
            push_line!(out, "  {sid}");
        }
        out
    }
}

/// `replay calls`: what each call's replay did.
struct CallsReplayed(Vec<CallReplay>);

impl Report for CallsReplayed {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.0)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.0 {
            match (&r.replayed, &r.error) {
                (Some(done), _) => push_line!(
                    out,
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
                (None, error) => push_line!(
                    out,
                    "{}  not replayed: {}",
                    r.call_sid,
                    error.as_deref().unwrap_or("unknown")
                ),
            }
        }
        out
    }
}
