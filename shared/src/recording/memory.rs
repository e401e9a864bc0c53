//! [`RecordingStore`] in memory, by the same rules as the DynamoDB store ([`crate::recording`]):
//! for tests of the logic around a store without an emulator. `tests/recording_store.rs`
//! holds both stores to the same outcomes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::media::{Archived, UploadProgress};
use super::{
    ARCHIVED, InlineTranscript, RecordingRecord, RecordingRef, RecordingStore, TranscriptOutcome,
    Trouble, epoch_ms, lease_is_free, status_may_move,
};
use crate::calls::StoreError;
use crate::twilio::RecordingStatus;

/// Recordings held in memory, by (CallSid, RecordingSid): a call's recordings come out in
/// RecordingSid order, as DynamoDB's sort key gives them.
#[derive(Debug, Default)]
pub struct MemoryRecordingStore {
    recordings: Mutex<BTreeMap<(String, String), RecordingRecord>>,
}

impl MemoryRecordingStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the recording, made whole first (as every DynamoDB write names it).
    fn change<R>(
        &self,
        call_sid: &str,
        recording_sid: &str,
        f: impl FnOnce(&mut RecordingRecord) -> R,
    ) -> R {
        let mut recordings = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        let record = recordings
            .entry((call_sid.to_owned(), recording_sid.to_owned()))
            .or_insert_with(|| RecordingRecord {
                call_sid: call_sid.to_owned(),
                recording_sid: recording_sid.to_owned(),
                ..RecordingRecord::default()
            });
        f(record)
    }

    /// The identity every write carries (what the callback knows of the recording).
    fn update(&self, recording: &RecordingRef<'_>, f: impl FnOnce(&mut RecordingRecord)) {
        self.change(recording.call_sid, recording.recording_sid, |record| {
            identity(record, recording);
            f(record);
        });
    }
}

fn identity(record: &mut RecordingRecord, recording: &RecordingRef<'_>) {
    if let Some(secs) = recording.duration_secs {
        record.duration_secs = Some(secs.into());
    }
    if let Some(channels) = recording.channels {
        record.channels = Some(channels.into());
    }
}

impl RecordingStore for MemoryRecordingStore {
    async fn record_status(
        &self,
        recording: &RecordingRef<'_>,
        status: RecordingStatus,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(
            self.change(recording.call_sid, recording.recording_sid, |record| {
                if !status_may_move(record.state.as_deref(), status) {
                    return false;
                }
                identity(record, recording);
                record.state = Some(status.as_str().to_owned());
                if let Some(code) = error_code.filter(|code| *code != "0") {
                    record.error_code = Some(code.to_owned());
                }
                true
            }),
        )
    }

    async fn take_lease(
        &self,
        recording: &RecordingRef<'_>,
        until_ms: u64,
    ) -> Result<bool, StoreError> {
        let now_ms = epoch_ms();
        Ok(
            self.change(recording.call_sid, recording.recording_sid, |record| {
                let free = lease_is_free(record.lease_until_ms, now_ms);
                if free {
                    record.lease_until_ms = Some(until_ms);
                }
                free
            }),
        )
    }

    async fn save_progress(
        &self,
        recording: &RecordingRef<'_>,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| {
            record.upload = progress.cloned();
            record.lease_until_ms = Some(0);
        });
        Ok(())
    }

    async fn record_trouble(
        &self,
        recording: &RecordingRef<'_>,
        trouble: &Trouble,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| record.trouble = Some(trouble.clone()));
        Ok(())
    }

    async fn record_archived(
        &self,
        recording: &RecordingRef<'_>,
        archived: &Archived,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| {
            record.upload = None;
            record.trouble = None;
            record.lease_until_ms = Some(0);
            record.state = Some(ARCHIVED.to_owned());
            record.s3_bucket = Some(archived.bucket.clone());
            record.s3_key = Some(archived.key.clone());
            record.bytes = Some(archived.bytes);
            record.sha256 = Some(archived.sha256.clone());
        });
        Ok(())
    }

    async fn record_deleted_from_twilio(
        &self,
        recording: &RecordingRef<'_>,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| record.deleted_from_twilio = true);
        Ok(())
    }

    async fn record_transcription_started(
        &self,
        recording: &RecordingRef<'_>,
        job: &str,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| {
            record.transcription_job = Some(job.to_owned());
            record
                .transcription_status
                .get_or_insert_with(|| "IN_PROGRESS".to_owned());
        });
        Ok(())
    }

    async fn record_transcript(
        &self,
        (call_sid, recording_sid): (&str, &str),
        job: &str,
        outcome: &TranscriptOutcome,
        document_key: &str,
    ) -> Result<(), StoreError> {
        self.change(call_sid, recording_sid, |record| {
            record.transcription_job = Some(job.to_owned());
            match outcome {
                TranscriptOutcome::Completed { text, channels } => {
                    let kept = InlineTranscript::of(text, channels);
                    let mut channels = kept.channels;
                    channels.sort();
                    record.transcription_status = Some("COMPLETED".to_owned());
                    record.transcript_text = Some(kept.text);
                    record.transcript_channels = channels;
                    record.transcript_s3_key = Some(document_key.to_owned());
                    record.transcript_truncated = kept.truncated;
                }
                TranscriptOutcome::Failed { reason } => {
                    record.transcription_status = Some("FAILED".to_owned());
                    record.transcription_failure = Some(reason.clone());
                }
            }
        });
        Ok(())
    }

    async fn record_twilio_transcription(
        &self,
        recording: &RecordingRef<'_>,
        _transcription_sid: &str,
        status: &str,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update(recording, |record| {
            record.twilio_transcription_status = Some(status.to_owned());
            if let Some(text) = text {
                record.twilio_transcription_text = Some(text.to_owned());
            }
        });
        Ok(())
    }

    async fn get(
        &self,
        call_sid: &str,
        recording_sid: &str,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let recordings = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        Ok(recordings
            .get(&(call_sid.to_owned(), recording_sid.to_owned()))
            .cloned())
    }

    async fn for_call(&self, call_sid: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let recordings = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        Ok(recordings
            .iter()
            .filter(|((call, _), _)| call == call_sid)
            .map(|(_, record)| record.clone())
            .collect())
    }
}
