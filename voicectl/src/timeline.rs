//! `voicectl call`: what the pipeline did with one call, read from the calls table.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use shared::recording::store::RecordingRecord;
use shared::store::CallRecord;

use crate::stack::Stack;

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub call_sid: String,
    /// `None`: the table has no state for the call (no status applied, no start recorded).
    pub call: Option<CallRecord>,
    pub recordings: Vec<RecordingRecord>,
}

pub async fn load(stack: &Stack, call_sid: &str) -> anyhow::Result<CallView> {
    let call = stack.calls().get_call(call_sid).await?;
    let recordings = stack.recordings().for_call(call_sid).await?;
    Ok(CallView {
        call_sid: call_sid.to_owned(),
        call,
        recordings,
    })
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The view as a reader wants it at 3 a.m.: a summary line, the timeline, the recordings.
pub fn render(view: &CallView) -> String {
    let mut out = String::new();
    match &view.call {
        None => out.push_str(&format!("call {}: no state stored\n", view.call_sid)),
        Some(call) => {
            out.push_str(&format!(
                "call {}  flow {}  status {} (seq {})\n{} events; {} duplicate deliveries absorbed; {} late (kept, not applied)\n",
                call.call_sid,
                or_dash(call.flow.as_deref()),
                or_dash(call.status.as_deref()),
                or_dash(call.sequence_number),
                call.timeline.len(),
                call.duplicates,
                call.late_events(),
            ));
            let mut table = Table::new();
            table.load_style(UTF8_FULL_CONDENSED).set_header([
                "#",
                "status",
                "seq",
                "Twilio time",
                "received",
                "applied",
            ]);
            for (i, entry) in call.timeline.iter().enumerate() {
                table.add_row([
                    (i + 1).to_string(),
                    entry.status.clone(),
                    or_dash(entry.sequence_number),
                    or_dash(entry.timestamp.as_deref()),
                    entry.received_at.clone(),
                    if entry.applied { "applied" } else { "late" }.to_owned(),
                ]);
            }
            out.push_str(&format!("{table}\n"));
        }
    }
    if view.recordings.is_empty() {
        out.push_str("no recordings\n");
        return out;
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "recording",
        "state",
        "bytes",
        "sha256",
        "S3 key",
        "Twilio copy",
        "transcript",
    ]);
    for r in &view.recordings {
        let transcript = match (&r.transcription_status, &r.transcription_failure) {
            (Some(status), Some(why)) => format!("{status}: {why}"),
            (Some(status), None) => status.clone(),
            (None, _) => r
                .twilio_transcription_status
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| format!("Twilio: {s}")),
        };
        table.add_row([
            r.recording_sid.clone(),
            or_dash(r.state.as_deref()),
            or_dash(r.bytes),
            or_dash(r.sha256.as_deref()),
            or_dash(r.s3_key.as_deref()),
            if r.deleted_from_twilio {
                "deleted"
            } else {
                "kept"
            }
            .to_owned(),
            transcript,
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out
}
