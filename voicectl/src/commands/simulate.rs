//! `voicectl simulate`: calls played the way Twilio does, against any stack.

use std::process::ExitCode;
use std::time::Duration;

use voicectl::media_server::MediaServer;
use voicectl::progress_bar;
use voicectl::simulate::{self, SimulateOptions, SimulationReport};

use super::{Output, Report, exit, json_of, push_line};
use crate::cli::SimulateArgs;

pub async fn run(args: SimulateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let options = options(&args);
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
    let bar = progress_bar(0, out.json);
    bar.set_message("calls played");
    let report = simulate::run_with_media(&options, media.as_ref(), &bar).await?;
    bar.finish_and_clear();
    let mut unfetched = 0;
    if let Some(media) = &media {
        // The workers fetch after the acks; stay until they have.
        let until = std::time::Instant::now() + args.linger;
        while media.pending() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        unfetched = media.pending();
    }
    let played = Played {
        report,
        unfetched,
        linger: args.linger,
    };
    out.print(&played)?;
    let failed = played.report.gave_up.len() + played.report.voice_errors.len();
    if failed > 0 {
        eprintln!("{failed} requests failed");
    }
    Ok(exit(failed == 0))
}

fn options(args: &SimulateArgs) -> SimulateOptions {
    let defaults = SimulateOptions::default();
    SimulateOptions {
        calls: args.calls,
        seed: args.seed,
        concurrency: args.concurrency,
        duplicate_rate: args.duplicates,
        reorder_rate: args.reorder,
        public_base_url: args.base_url.clone(),
        routes: args.routes.clone(),
        numbers: if args.numbers.is_empty() {
            defaults.numbers
        } else {
            args.numbers.clone()
        },
        softphone_rate: args.softphone,
        account_sid: args.account_sid.clone(),
        auth_token: args.auth_token.clone(),
        media_not_ready_rate: args.media_not_ready,
        voice_fallback: !args.no_voice_fallback,
        fragment_signing: simulate::FragmentSigning::Either { seed: args.seed },
        rate: args.rate,
        delay_rate: args.delays,
        max_delay: args.max_delay,
        ..defaults
    }
}

/// The calls played, and the recordings no worker fetched while the stand-in waited.
struct Played {
    report: SimulationReport,
    unfetched: usize,
    linger: Duration,
}

impl Report for Played {
    fn json(&self) -> serde_json::Result<String> {
        json_of(&self.report)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let report = &self.report;
        if self.unfetched > 0 {
            push_line!(
                out,
                "{} recording(s) not fetched within {:?}",
                self.unfetched,
                self.linger
            );
        }
        push_line!(
            out,
            "{:<36} {:<16} {:<12} {:>5} {:>4} {:>9} {:>10}",
            "call",
            "to",
            "status",
            "steps",
            "legs",
            "callbacks",
            "recordings"
        );
        for call in &report.calls {
            let recordings = call
                .conversation
                .requested
                .iter()
                .filter(|r| r.params.get("RecordingSid").is_some())
                .filter(|r| r.params.get("TranscriptionSid").is_none())
                .count();
            push_line!(
                out,
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
        push_line!(
            out,
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
        push_line!(
            out,
            "voice (TwiML) latency: p50 {:.1} ms, p99 {:.1} ms; callback ack latency: p50 {:.1} ms, p99 {:.1} ms",
            report.voice_latency_ms(50.0),
            report.voice_latency_ms(99.0),
            report.latency_ms(50.0),
            report.latency_ms(99.0)
        );
        for line in &report.voice_fallbacks {
            push_line!(out, "fallback: {line}");
        }
        for line in report.voice_errors.iter().chain(&report.gave_up) {
            push_line!(out, "error: {line}");
        }
        out
    }
}
