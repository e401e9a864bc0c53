//! `voicectl reconcile`: Twilio's REST API as the source of truth; what no callback
//! delivered is queued for the workers.

use std::process::ExitCode;
use std::time::Duration;

use voicectl::connect::Stack;
use voicehooks::queue::SqsEventQueue;
use voicehooks::reconcile::{ReconcileReport, Reconciler};
use voicehooks::stack_names::WorkQueue;

use super::numbers::twilio_client;
use super::{Output, Report, json_of, push_line};
use crate::cli::TwilioApiArgs;

pub async fn run(
    stack: &Stack,
    since: Duration,
    api: &TwilioApiArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let credentials = stack.current_credentials().await?;
    let twilio = twilio_client(&credentials, api);
    let status = stack.queues(WorkQueue::Status).await?;
    let recording = stack.queues(WorkQueue::Recording).await?;
    let queue = |url: &str| SqsEventQueue::new(stack.sqs.clone(), url);
    let (status_queue, recording_queue) = (queue(&status.queue_url), queue(&recording.queue_url));
    let report = Reconciler {
        twilio: &twilio,
        calls: &stack.calls(),
        recordings: &stack.recordings(),
        status_queue: &status_queue,
        recording_queue: &recording_queue,
    }
    .run(time::OffsetDateTime::now_utc() - since)
    .await?;
    out.print(&report)?;
    Ok(ExitCode::SUCCESS)
}

impl Report for ReconcileReport {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        push_line!(
            out,
            "Twilio since {}: {} calls, {} recordings listed",
            self.since,
            self.calls_listed,
            self.recordings_listed
        );
        push_line!(
            out,
            "  final statuses queued  {}",
            self.statuses_repaired.len()
        );
        for (sid, status) in &self.statuses_repaired {
            push_line!(out, "    {sid}  {status} (reconciled)");
        }
        push_line!(
            out,
            "  recordings queued      {}",
            self.recordings_queued.len()
        );
        for (call, recording) in &self.recordings_queued {
            push_line!(out, "    {call}  {recording}");
        }
        out
    }
}
