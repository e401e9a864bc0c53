//! Reconciliation: Twilio, not our table, is the final word on what happened.
//!
//! Twilio gives up on a callback it could not deliver (a 5xx it was not told to retry, its
//! attempts spent), and then the call's final status or a recording never reaches us. This
//! lists Twilio's Calls and Recordings in a window (its REST API, every page) and repairs what
//! no callback delivered, through the same queues the webhooks feed, so the workers apply it
//! with the same idempotent, order-safe rules:
//! - a call that ended at Twilio while our table has no final status gets that status as a
//!   `call.status` event whose key says `reconciled`; it can only move the call forward, never
//!   undo an event already applied;
//! - a completed recording that is not archived gets a `recording.status` event on the
//!   recording queue (a worker already on it holds the lease; the copy is absorbed).

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::calls::DynamoCallStore;
use crate::events::Envelope;
use crate::queue::EventQueue;
use crate::recording::{DynamoRecordingStore, RecordingStore};
use crate::twilio::rest::{Call, Recording, RestClient, RestError};
use crate::twilio::{CallStatus, Params, RecordingCallback, StatusCallback};

/// The idempotency key's prefix of a reconciled event, which the timeline shows as
/// `reconciled`.
pub const RECONCILED: &str = "reconciled";

/// Whether an event with this idempotency key came from reconciliation.
pub fn is_reconciled(idempotency_key: &str) -> bool {
    idempotency_key.starts_with("reconciled:")
}

/// What one reconciliation saw and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReconcileReport {
    /// RFC 3339: the window's start.
    pub since: String,
    pub calls_listed: usize,
    pub recordings_listed: usize,
    /// Calls whose final status was queued (CallSid, status).
    pub statuses_repaired: Vec<(String, String)>,
    /// Recordings queued for archiving (CallSid, RecordingSid).
    pub recordings_queued: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Twilio(#[from] RestError),
    #[error("{0}")]
    Store(#[from] crate::calls::StoreError),
    #[error("could not queue a repair: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("Twilio's {what} is not a valid callback: {why}")]
    Shape { what: String, why: String },
}

/// Where repairs go, and what is read to decide them.
pub struct Reconciler<'a, Q> {
    pub twilio: &'a RestClient,
    pub calls: &'a DynamoCallStore,
    pub recordings: &'a DynamoRecordingStore,
    pub status_queue: &'a Q,
    pub recording_queue: &'a Q,
}

/// A Twilio time (RFC 2822) as an instant; `None` when absent or unreadable.
fn twilio_time(time: Option<&str>) -> Option<OffsetDateTime> {
    time.and_then(|t| OffsetDateTime::parse(t, &Rfc2822).ok())
}

impl<Q: EventQueue> Reconciler<'_, Q> {
    /// Repairs what Twilio knows of the window since `since` and we do not.
    pub async fn run(&self, since: OffsetDateTime) -> Result<ReconcileReport, ReconcileError> {
        // Twilio filters by day (`StartTime>`, `DateCreated>` take `YYYY-MM-DD`); the window
        // is cut to the second here.
        let day = since.date().to_string();
        let calls = self.twilio.calls_since(&day).await?;
        let recordings = self.twilio.recordings_since(&day).await?;
        let mut report = ReconcileReport {
            since: since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            calls_listed: calls.len(),
            recordings_listed: recordings.len(),
            ..ReconcileReport::default()
        };
        for call in &calls {
            if twilio_time(call.start_time.as_deref()).is_none_or(|t| t < since) {
                continue;
            }
            if let Some(status) = self.repair_call(call).await? {
                report.statuses_repaired.push((call.sid.clone(), status));
            }
        }
        for recording in &recordings {
            if twilio_time(Some(&recording.date_created)).is_none_or(|t| t < since) {
                continue;
            }
            if let Some(call_sid) = self.repair_recording(recording).await? {
                report
                    .recordings_queued
                    .push((call_sid, recording.sid.clone()));
            }
        }
        Ok(report)
    }

    /// Queues the call's final status when Twilio has one and we do not.
    async fn repair_call(&self, call: &Call) -> Result<Option<String>, ReconcileError> {
        let Ok(status) = call.status.parse::<CallStatus>() else {
            return Ok(None);
        };
        if !status.is_terminal() {
            return Ok(None);
        }
        let ours = self.calls.get_call(&call.sid).await?;
        let have_final = ours
            .as_ref()
            .and_then(|r| r.status.as_deref())
            .and_then(|s| s.parse::<CallStatus>().ok())
            .is_some_and(CallStatus::is_terminal);
        if have_final {
            return Ok(None);
        }
        let envelope = status_envelope(call, status)?;
        self.status_queue.send(&envelope).await?;
        Ok(Some(status.as_str().to_owned()))
    }

    /// Queues a completed recording that is not archived.
    async fn repair_recording(
        &self,
        recording: &Recording,
    ) -> Result<Option<String>, ReconcileError> {
        let Some(call_sid) = recording.call_sid.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if recording.status != "completed" {
            return Ok(None);
        }
        let ours = self.recordings.get(call_sid, &recording.sid).await?;
        if ours.is_some_and(|r| r.is_archived()) {
            return Ok(None);
        }
        let envelope = recording_envelope(recording, call_sid)?;
        self.recording_queue.send(&envelope).await?;
        Ok(Some(call_sid.to_owned()))
    }
}

/// The status callback Twilio did not deliver, rebuilt from its Call resource.
fn status_envelope(call: &Call, status: CallStatus) -> Result<Envelope, ReconcileError> {
    let mut params = vec![
        ("AccountSid", call.account_sid.clone()),
        ("CallSid", call.sid.clone()),
        ("CallStatus", status.as_str().to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    let optional = [
        ("From", &call.from),
        ("To", &call.to),
        ("Direction", &call.direction),
        ("ParentCallSid", &call.parent_call_sid),
        ("CallDuration", &call.duration),
    ];
    for (name, value) in optional {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            params.push((name, value.clone()));
        }
    }
    let params: Params = params.into_iter().collect();
    let callback = StatusCallback::parse(&params).map_err(|e| ReconcileError::Shape {
        what: format!("call {}", call.sid),
        why: e.to_string(),
    })?;
    let mut envelope = Envelope::call_status(&callback, &params, None);
    envelope.idempotency_key = format!("{RECONCILED}:{}:{}", call.sid, status.as_str());
    Ok(envelope)
}

/// The recording callback Twilio did not deliver, rebuilt from its Recording resource.
fn recording_envelope(recording: &Recording, call_sid: &str) -> Result<Envelope, ReconcileError> {
    let url = recording
        .media_url
        .as_deref()
        .map(|u| u.trim_end_matches(".json").to_owned())
        .unwrap_or_default();
    let mut params = vec![
        ("AccountSid", recording.account_sid.clone()),
        ("CallSid", call_sid.to_owned()),
        ("RecordingSid", recording.sid.clone()),
        ("RecordingStatus", "completed".to_owned()),
        ("RecordingUrl", url),
    ];
    let optional = [
        ("RecordingDuration", recording.duration.clone()),
        (
            "RecordingChannels",
            recording.channels.map(|c| c.to_string()),
        ),
        ("RecordingSource", recording.source.clone()),
        ("RecordingStartTime", recording.start_time.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            params.push((name, value));
        }
    }
    let params: Params = params.into_iter().collect();
    let callback = RecordingCallback::parse(&params).map_err(|e| ReconcileError::Shape {
        what: format!("recording {}", recording.sid),
        why: e.to_string(),
    })?;
    Ok(Envelope::recording_status(&callback, &params, None))
}
