//! `voicectl call`: what the pipeline did with one call, read from the calls table.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use voicehooks::calls::CallRecord;
use voicehooks::calls::conference::Room;
use voicehooks::recording::{RecordingRecord, RecordingStore};

use crate::connect::Stack;

/// The table's width: the recordings' reasons wrap to fit a 100-column terminal.
const WIDTH: u16 = 100;

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub call_sid: String,
    /// `None`: the table has no state for the call (no status applied, no start recorded).
    pub call: Option<CallRecord>,
    /// The conference rooms the call joined, as last folded from their events.
    pub rooms: Vec<Room>,
    pub recordings: Vec<RecordingView>,
}

/// A recording as stored, and what that means for on-call.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingView {
    #[serde(flatten)]
    pub record: RecordingRecord,
    /// `archived`, `archiving`, `retrying`, `dead-lettered`, `refused`, or Twilio's word
    /// (`in-progress`, `absent`, `failed`); `-` when nothing was processed yet.
    pub condition: String,
    /// What it means, with the reason when something went wrong.
    pub detail: String,
}

pub async fn load(stack: &Stack, call_sid: &str) -> anyhow::Result<CallView> {
    let calls = stack.calls();
    let call = calls.get_call(call_sid).await?;
    let mut rooms = Vec::new();
    for sid in call.iter().flat_map(|c| &c.conferences) {
        rooms.extend(calls.get_conference(sid).await?);
    }
    let recordings = stack.recordings().for_call(call_sid).await?;
    Ok(CallView {
        call_sid: call_sid.to_owned(),
        call,
        rooms,
        recordings: recordings.into_iter().map(explain).collect(),
    })
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// What a recording's item says, in words: archived beats any trouble (cleared then anyway),
/// the worker's trouble beats Twilio's status.
pub fn explain(record: RecordingRecord) -> RecordingView {
    let (condition, detail) = if record.is_archived() {
        let mut detail = format!(
            "{} in s3://{}/{}, sha256 {}; Twilio's copy {}",
            megabytes(record.bytes.unwrap_or_default()),
            record.s3_bucket.as_deref().unwrap_or("?"),
            record.s3_key.as_deref().unwrap_or("?"),
            record
                .sha256
                .as_deref()
                .map_or("?", |h| &h[..h.len().min(12)]),
            if record.deleted_from_twilio {
                "deleted"
            } else {
                "kept"
            },
        );
        if let Some(why) = &record.transcription_failure {
            detail.push_str(&format!("; transcription failed: {why}"));
        }
        ("archived".to_owned(), detail)
    } else if let Some(t) = &record.trouble {
        let detail = match t.state.as_str() {
            "retrying" => format!(
                "receive {} of {}, next attempt at {}: {}",
                t.receive.unwrap_or_default(),
                t.max_receives.unwrap_or_default(),
                t.next_at.as_deref().unwrap_or("?"),
                t.reason
            ),
            "refused" => format!(
                "{}. No request was sent; the event is in the recording DLQ and a redrive \
                 leaves it unless --force",
                t.reason
            ),
            _ => format!(
                "{} (in the recording DLQ: `voicectl dlq peek --queue recording`)",
                t.reason
            ),
        };
        (t.state.clone(), detail)
    } else if let Some(upload) = &record.upload {
        (
            "archiving".to_owned(),
            format!(
                "{} uploaded in {} parts; the next invocation resumes there",
                megabytes(upload.bytes),
                upload.parts.len()
            ),
        )
    } else {
        let state = record.state.clone().unwrap_or_else(|| "-".to_owned());
        let code = record
            .error_code
            .as_deref()
            .map_or(String::new(), |c| format!(" (Twilio error {c})"));
        let detail = match state.as_str() {
            "in-progress" => "Twilio is recording; the file comes with `completed`".to_owned(),
            "absent" => format!(
                "Twilio has no file{code}: the recording was too short (16101), or silent and \
                 the account deletes silent recordings (16102)"
            ),
            "failed" => format!("Twilio could not produce the file{code}"),
            _ => "no callback for it processed yet".to_owned(),
        };
        (state, detail)
    };
    RecordingView {
        record,
        condition,
        detail,
    }
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
                    match (entry.applied, entry.reconciled) {
                        (true, true) => "reconciled",
                        (true, false) => "applied",
                        (false, true) => "reconciled, late",
                        (false, false) => "late",
                    }
                    .to_owned(),
                ]);
            }
            out.push_str(&format!("{table}\n"));
        }
    }
    if !view.rooms.is_empty() {
        out.push_str(&rooms(&view.call_sid, &view.rooms));
    }
    if view.recordings.is_empty() {
        out.push_str("no recordings\n");
        return out;
    }
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(["recording", "state", "what it means", "transcript"]);
    for r in &view.recordings {
        let record = &r.record;
        let transcript = match (
            &record.transcription_status,
            &record.twilio_transcription_status,
        ) {
            (Some(status), _) => status.clone(),
            (None, Some(status)) => format!("Twilio: {status}"),
            (None, None) => "-".to_owned(),
        };
        table.add_row([
            record.recording_sid.clone(),
            r.condition.clone(),
            r.detail.clone(),
            transcript,
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out
}

/// The rooms a call joined: the room's state, and this call's part in it.
fn rooms(call_sid: &str, rooms: &[Room]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(["room", "room state", "this call", "others"]);
    for room in rooms {
        let state = match (&room.status[..], &room.end_reason) {
            ("completed", Some(reason)) => format!("ended\n{reason}"),
            (status, _) => status.to_owned(),
        };
        let part = room.participant(call_sid).map_or_else(
            || "-".to_owned(),
            |p| {
                let mut said = vec![format!("joined {}", or_dash(p.joined_at.as_deref()))];
                if let Some(left) = &p.left_at {
                    said.push(format!(
                        "left {left} ({})",
                        or_dash(p.left_reason.as_deref())
                    ));
                }
                if p.muted {
                    said.push("muted".into());
                }
                if p.hold {
                    said.push("on hold".into());
                }
                said.join("; ")
            },
        );
        table.add_row([
            format!(
                "{}\n{}",
                or_dash(room.friendly_name.as_deref()),
                room.conference_sid
            ),
            state,
            part,
            (room.participants.len().saturating_sub(1)).to_string(),
        ]);
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use voicehooks::recording::Trouble;

    fn recording() -> RecordingRecord {
        RecordingRecord {
            call_sid: "CA1".into(),
            recording_sid: "RE5a3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d".into(),
            ..RecordingRecord::default()
        }
    }

    #[test]
    fn every_state_says_what_it_means_and_the_table_fits_100_columns() {
        let retrying = RecordingRecord {
            state: Some("in-progress".into()),
            trouble: Some(Trouble {
                state: "retrying".into(),
                reason: "transient failure: error sending request for url \
                         (https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.wav): \
                         client error (Connect): tcp connect error: Connection refused"
                    .into(),
                receive: Some(2),
                max_receives: Some(5),
                next_at: Some("2026-12-01T10:02:13Z".into()),
                at: "2026-12-01T10:01:13Z".into(),
            }),
            ..recording()
        };
        let absent = RecordingRecord {
            state: Some("absent".into()),
            error_code: Some("16102".into()),
            ..recording()
        };
        let views: Vec<RecordingView> = [retrying, absent, recording()]
            .into_iter()
            .map(explain)
            .collect();
        assert_eq!(views[0].condition, "retrying");
        assert!(
            views[0]
                .detail
                .starts_with("receive 2 of 5, next attempt at 2026-12-01T10:02:13Z")
        );
        assert!(views[0].detail.ends_with("Connection refused"));
        assert_eq!(views[1].condition, "absent");
        assert!(
            views[1].detail.contains("Twilio error 16102") && views[1].detail.contains("silent")
        );
        assert_eq!(views[2].condition, "-");
        let room = voicehooks::calls::conference::Room {
            conference_sid: "CF0123456789abcdef0123456789abcdef".into(),
            friendly_name: Some("daily-standup".into()),
            status: "completed".into(),
            end_reason: Some("last-participant-left".into()),
            participants: vec![voicehooks::calls::conference::Participant {
                call_sid: "CA1".into(),
                joined_at: Some("Wed, 02 Dec 2026 12:00:04 +0000".into()),
                left_at: Some("Wed, 02 Dec 2026 12:03:04 +0000".into()),
                left_reason: Some("participant_hung_up".into()),
                muted: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&CallView {
            call_sid: "CA1".into(),
            call: None,
            rooms: vec![room],
            recordings: views,
        });
        assert!(
            text.contains("daily-standup") && text.contains("last-participant-left"),
            "{text}"
        );
        assert!(
            text.contains("participant_hung_up") && text.contains("muted"),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= usize::from(WIDTH), "{line}");
        }
        assert!(text.contains("Connection refused"), "{text}");
    }
}
