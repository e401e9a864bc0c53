//! The transcript worker: a finished Transcribe job's document, or Twilio's own
//! transcription, onto the recording's item.

use super::{JobStateChange, Transcriber, read_transcript};
use crate::events::{Envelope, EventKind};
use crate::metrics::{self, name};
use crate::recording::keys::RecordingKey;
use crate::recording::{DynamoRecordingStore, RecordingRef, RecordingStore, TranscriptOutcome};
use crate::twilio::TranscriptionCallback;
use crate::worker::{BatchWorker, Budget, Disposition, FateNotes, Pace, QueuedMessage, decide_by};

/// The transcript worker: Transcribe's state changes (via EventBridge) and Twilio's own
/// transcriptions, both onto the recording's item.
pub struct TranscriptWorker<S = DynamoRecordingStore> {
    pub transcriber: Transcriber,
    pub s3: aws_sdk_s3::Client,
    pub store: S,
    pub bucket: String,
    /// Its measured time per message.
    pub pace: Pace,
}

impl<S: RecordingStore> FateNotes for TranscriptWorker<S> {}

impl<S: RecordingStore> BatchWorker for TranscriptWorker<S> {
    fn pace(&self) -> &Pace {
        &self.pace
    }

    /// Each message on its own, all at once.
    async fn decide<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        budget: &Budget<'_>,
    ) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
        let decisions = messages.iter().map(|m| self.handle(m.body));
        decide_by(messages, budget, decisions).await
    }
}

impl<S: RecordingStore> TranscriptWorker<S> {
    /// Decides one message. Logs what it decided when it is not done.
    pub async fn handle(&self, body: &str) -> Disposition {
        let disposition = self.decide_one(body).await;
        match &disposition {
            Disposition::Done | Disposition::Continue { .. } | Disposition::NotStarted => {}
            Disposition::Retry { reason, .. } => {
                tracing::warn!(outcome = "retry", reason, "transcript not stored yet")
            }
            Disposition::DeadLetter { reason } => {
                tracing::error!(
                    outcome = "dead-letter",
                    reason,
                    "transcript message sent to the DLQ"
                )
            }
        }
        disposition
    }

    async fn decide_one(&self, body: &str) -> Disposition {
        if let Some(change) = JobStateChange::from_event(body) {
            return self.job_changed(&change).await;
        }
        let envelope = match Envelope::from_json(body) {
            Ok(envelope) if envelope.kind == EventKind::TranscriptionTwilio => envelope,
            Ok(envelope) => {
                return Disposition::dead_letter(format!(
                    "envelope kind {} does not belong on the transcript queue",
                    envelope.kind.as_str()
                ));
            }
            Err(e) => {
                return Disposition::dead_letter(format!(
                    "neither a Transcribe state change nor an envelope: {e}"
                ));
            }
        };
        let callback = match TranscriptionCallback::parse(&envelope.params) {
            Ok(callback) => callback,
            Err(e) => return Disposition::dead_letter(e),
        };
        let recording = RecordingRef {
            account_sid: callback.account_sid,
            call_sid: callback.call_sid,
            recording_sid: callback.recording_sid,
            duration_secs: None,
            channels: None,
            source: None,
        };
        match self
            .store
            .record_twilio_transcription(
                &recording,
                callback.transcription_sid,
                callback.status,
                callback.text,
            )
            .await
        {
            Ok(()) => {
                tracing::info!(
                    call_sid = callback.call_sid,
                    recording_sid = callback.recording_sid,
                    status = callback.status,
                    outcome = "stored",
                    "Twilio transcription stored"
                );
                Disposition::Done
            }
            Err(e) => Disposition::retry(e),
        }
    }

    async fn job_changed(&self, change: &JobStateChange) -> Disposition {
        if change.status != "COMPLETED" && change.status != "FAILED" {
            return Disposition::Done;
        }
        let job = match self.transcriber.job(&change.job_name).await {
            Ok(job) => job,
            Err(e) => return Disposition::retry(e),
        };
        let Some(recording) = job
            .media_uri
            .as_deref()
            .and_then(|uri| RecordingKey::key_in(uri, &self.bucket))
            .and_then(RecordingKey::parse)
        else {
            return Disposition::dead_letter(format!(
                "job {} is not a voicehooks recording (media {:?})",
                change.job_name, job.media_uri
            ));
        };
        let mut document_key = recording.transcript();
        let outcome = if change.status == "FAILED" {
            TranscriptOutcome::Failed {
                reason: change
                    .failure_reason
                    .clone()
                    .or(job.failure_reason)
                    .unwrap_or_else(|| "Transcribe gave no reason".into()),
            }
        } else {
            let key = job
                .transcript_uri
                .as_deref()
                .and_then(|uri| RecordingKey::key_in(uri, &self.bucket))
                .map_or_else(|| recording.transcript(), str::to_owned);
            let document = match self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(object) => match object.body.collect().await {
                    Ok(bytes) => bytes.into_bytes(),
                    Err(e) => return Disposition::retry(format!("reading {key}: {e}")),
                },
                Err(e) => {
                    return Disposition::retry(format!(
                        "reading {key}: {}",
                        crate::aws::error_summary(&e)
                    ));
                }
            };
            document_key.clone_from(&key);
            match read_transcript(&document) {
                Ok(outcome) => outcome,
                Err(e) => {
                    return Disposition::dead_letter(format!(
                        "{key} is not a Transcribe output document: {e}"
                    ));
                }
            }
        };
        match self
            .store
            .record_transcript(
                (&recording.call_sid, &recording.recording_sid),
                &change.job_name,
                &outcome,
                &document_key,
            )
            .await
        {
            Ok(()) => {
                tracing::info!(
                    call_sid = recording.call_sid,
                    recording_sid = recording.recording_sid,
                    status = change.status,
                    outcome = "stored",
                    "transcript stored"
                );
                metrics::count(
                    if change.status == "FAILED" {
                        name::TRANSCRIPTIONS_FAILED
                    } else {
                        name::TRANSCRIPTIONS_COMPLETED
                    },
                    1,
                );
                Disposition::Done
            }
            Err(e) => Disposition::retry(e),
        }
    }
}
