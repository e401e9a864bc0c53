//! `voicectl dlq`: stats, peek, redrive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use voicectl::connect::Stack;
use voicectl::dlq::{self, Backlog, DeadLetter, Filter, RedriveOptions, RedriveReport};
use voicectl::progress_bar;
use voicehooks::stack_names::WorkQueue;

use super::{Output, Report, age, exit, json_of, push_line};
use crate::cli::{DlqCommand, work_queues};

pub async fn run(stack: &Stack, command: DlqCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::Stats => {
            let mut dead_letter_queues = Vec::new();
            for pipeline in WorkQueue::ALL {
                let queues = stack.queues(pipeline).await?;
                dead_letter_queues.push(dlq::stats(stack, &queues).await?);
            }
            out.print(&Backlog {
                dead_letter_queues,
                spill: dlq::spill_stats(stack).await?,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Peek { queue, limit, save } => {
            let mut peeked = Peeked {
                letters: Vec::new(),
                empty: Vec::new(),
                saved_to: save,
            };
            for pipeline in work_queues(queue) {
                let queues = stack.queues(pipeline).await?;
                let letters = dlq::peek(stack, &queues, limit).await?;
                if letters.is_empty() {
                    peeked.empty.push(queues.dlq_name);
                }
                peeked.letters.extend(letters);
            }
            if let Some(dir) = &peeked.saved_to {
                std::fs::create_dir_all(dir)?;
                for l in &peeked.letters {
                    let file = dir.join(format!("{}-{}.json", l.pipeline, l.message_id));
                    std::fs::write(file, &l.body)?;
                }
            }
            out.print(&peeked)?;
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
            let bar = progress_bar(0, out.json);
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
            let redriven = Redriven {
                reports,
                interrupted: interrupt.load(Ordering::SeqCst),
            };
            out.print(&redriven)?;
            Ok(exit(
                !redriven.interrupted && redriven.reports.iter().all(|r| r.failed == 0),
            ))
        }
    }
}

impl Report for Backlog {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.dead_letter_queues {
            push_line!(
                out,
                "{:<44} {:>6} waiting {:>6} in flight",
                s.dlq,
                s.messages,
                s.in_flight,
            );
        }
        let spill = &self.spill;
        push_line!(
            out,
            "{:<44} {:>6} waiting for the drainer (oldest {})",
            format!("spill: {}", spill.bucket),
            spill.events,
            spill.oldest_age_secs.map_or("-".to_owned(), age)
        );
        out
    }
}

/// What `dlq peek` found: the dead letters, the DLQs with none, where they were saved.
struct Peeked {
    letters: Vec<DeadLetter>,
    empty: Vec<String>,
    saved_to: Option<PathBuf>,
}

impl Report for Peeked {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.letters)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.letters {
            push_line!(
                out,
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
        for dlq in &self.empty {
            push_line!(out, "{dlq}: empty");
        }
        if let Some(dir) = &self.saved_to {
            push_line!(
                out,
                "saved {} message(s) to {}",
                self.letters.len(),
                dir.display()
            );
        }
        out
    }
}

/// What `dlq redrive` did, queue by queue, and whether Ctrl-C cut it short.
struct Redriven {
    reports: Vec<RedriveReport>,
    interrupted: bool,
}

impl Report for Redriven {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.reports)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.reports {
            push_line!(out, "{}", redrive_line(r));
        }
        if self.interrupted {
            push_line!(
                out,
                "interrupted: the rest is still in the DLQ; run the same command again"
            );
        }
        out
    }
}

/// One DLQ's redrive, in a line: what moved, and what stayed and why.
fn redrive_line(r: &RedriveReport) -> String {
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
