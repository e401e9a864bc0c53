//! Amazon Transcribe: starting a job per recording, and reading what a finished job left.
//!
//! A job is named after the RecordingSid, so a second start for one recording is refused by
//! Transcribe itself (`ConflictException`) and never makes a second job. When a job ends,
//! EventBridge sends "Transcribe Job State Change" with only the job's name and status
//! (<https://docs.aws.amazon.com/transcribe/latest/dg/monitoring-events.html>);
//! `GetTranscriptionJob` gives where its media and transcript are, and the media's key
//! says which call it belongs to.

use crate::metrics::{self, name};
use aws_sdk_transcribe::Client;
use aws_sdk_transcribe::operation::start_transcription_job::StartTranscriptionJobError;
use aws_sdk_transcribe::types::{
    ContentRedaction, LanguageCode, Media, MediaFormat as TranscribeFormat, RedactionOutput,
    RedactionType, Settings,
};
use serde::Deserialize;

use crate::config::MediaFormat;
use crate::events::{Envelope, EventKind};
use crate::recording::keys::RecordingKey;
use crate::recording::store::{DynamoRecordingStore, RecordingRef, TranscriptOutcome};
use crate::twilio::TranscriptionCallback;
use crate::worker::Disposition;

#[derive(Debug, thiserror::Error)]
#[error("Amazon Transcribe {operation} failed: {reason}")]
pub struct TranscribeError {
    pub operation: &'static str,
    pub reason: String,
}

/// What a start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStart {
    Started,
    /// A job of this name exists already: this is a redelivery, and that job stands.
    AlreadyExists,
}

/// One job to start.
#[derive(Debug, Clone)]
pub struct TranscriptionRequest<'a> {
    pub job_name: &'a str,
    pub bucket: &'a str,
    pub media_key: &'a str,
    pub output_key: &'a str,
    pub format: MediaFormat,
    pub channels: Option<u32>,
}

/// Where a job's media and result are, and why it failed if it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobInfo {
    pub status: Option<String>,
    pub media_uri: Option<String>,
    pub transcript_uri: Option<String>,
    pub failure_reason: Option<String>,
}

/// Transcribe with this deployment's settings.
#[derive(Clone)]
pub struct Transcriber {
    client: Client,
    language: String,
    redact_pii: bool,
}

impl Transcriber {
    pub fn new(client: Client, language: impl Into<String>, redact_pii: bool) -> Self {
        Self {
            client,
            language: language.into(),
            redact_pii,
        }
    }

    /// Starts the job for one archived recording; dual-channel audio is transcribed per
    /// channel (caller and agent apart).
    pub async fn start(
        &self,
        request: &TranscriptionRequest<'_>,
    ) -> Result<JobStart, TranscribeError> {
        let mut start = self
            .client
            .start_transcription_job()
            .transcription_job_name(request.job_name)
            .language_code(LanguageCode::from(self.language.as_str()))
            .media_format(match request.format {
                MediaFormat::Wav => TranscribeFormat::Wav,
                MediaFormat::Mp3 => TranscribeFormat::Mp3,
            })
            .media(
                Media::builder()
                    .media_file_uri(format!("s3://{}/{}", request.bucket, request.media_key))
                    .build(),
            )
            .output_bucket_name(request.bucket)
            .output_key(request.output_key);
        if request.channels == Some(2) {
            start = start.settings(Settings::builder().channel_identification(true).build());
        }
        if self.redact_pii {
            start = start.content_redaction(
                ContentRedaction::builder()
                    .redaction_type(RedactionType::Pii)
                    .redaction_output(RedactionOutput::Redacted)
                    .build()
                    .map_err(|e| TranscribeError {
                        operation: "StartTranscriptionJob",
                        reason: e.to_string(),
                    })?,
            );
        }
        match start.send().await {
            Ok(_) => Ok(JobStart::Started),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(StartTranscriptionJobError::ConflictException(_))
                ) =>
            {
                Ok(JobStart::AlreadyExists)
            }
            Err(e) => Err(TranscribeError {
                operation: "StartTranscriptionJob",
                reason: crate::aws::error_summary(&e),
            }),
        }
    }

    pub async fn job(&self, name: &str) -> Result<JobInfo, TranscribeError> {
        let output = self
            .client
            .get_transcription_job()
            .transcription_job_name(name)
            .send()
            .await
            .map_err(|e| TranscribeError {
                operation: "GetTranscriptionJob",
                reason: crate::aws::error_summary(&e),
            })?;
        let Some(job) = output.transcription_job else {
            return Ok(JobInfo::default());
        };
        let transcript = job.transcript.as_ref();
        Ok(JobInfo {
            status: job.transcription_job_status.map(|s| s.as_str().to_owned()),
            media_uri: job.media.and_then(|m| m.media_file_uri),
            // With redaction on, only the redacted transcript is written.
            transcript_uri: transcript
                .and_then(|t| t.redacted_transcript_file_uri.clone())
                .or_else(|| transcript.and_then(|t| t.transcript_file_uri.clone())),
            failure_reason: job.failure_reason,
        })
    }
}

/// The `detail` of an EventBridge "Transcribe Job State Change" event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobStateChange {
    #[serde(rename = "TranscriptionJobName")]
    pub job_name: String,
    #[serde(rename = "TranscriptionJobStatus")]
    pub status: String,
    #[serde(rename = "FailureReason", default)]
    pub failure_reason: Option<String>,
}

pub const STATE_CHANGE_DETAIL_TYPE: &str = "Transcribe Job State Change";

impl JobStateChange {
    /// Reads the EventBridge event an SQS message carries; `None` if it is not one.
    pub fn from_event(body: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Event {
            source: String,
            #[serde(rename = "detail-type")]
            detail_type: String,
            detail: JobStateChange,
        }
        let event: Event = serde_json::from_str(body).ok()?;
        (event.source == "aws.transcribe" && event.detail_type == STATE_CHANGE_DETAIL_TYPE)
            .then_some(event.detail)
    }
}

/// Which party each channel of a Twilio dual-channel recording is: the first channel is the
/// call's own leg (the caller), the second the dialled party (the agent).
pub const CHANNEL_ROLES: [&str; 2] = ["caller", "agent"];

/// Reads Transcribe's output document: the whole transcript and, with channel
/// identification, each channel's words by role.
/// <https://docs.aws.amazon.com/transcribe/latest/dg/how-channel-id.html>
pub fn read_transcript(document: &[u8]) -> Result<TranscriptOutcome, serde_json::Error> {
    #[derive(Deserialize)]
    struct Document {
        results: Results,
    }
    #[derive(Deserialize)]
    struct Results {
        transcripts: Vec<Text>,
        #[serde(default)]
        channel_labels: Option<ChannelLabels>,
    }
    #[derive(Deserialize)]
    struct Text {
        transcript: String,
    }
    #[derive(Deserialize)]
    struct ChannelLabels {
        channels: Vec<Channel>,
    }
    #[derive(Deserialize)]
    struct Channel {
        channel_label: String,
        items: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(rename = "type")]
        kind: String,
        alternatives: Vec<Alternative>,
    }
    #[derive(Deserialize)]
    struct Alternative {
        content: String,
    }
    let document: Document = serde_json::from_slice(document)?;
    let text = document
        .results
        .transcripts
        .iter()
        .map(|t| t.transcript.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let channels = document
        .results
        .channel_labels
        .map(|labels| labels.channels)
        .unwrap_or_default()
        .into_iter()
        .map(|channel| {
            let role = channel
                .channel_label
                .strip_prefix("ch_")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| CHANNEL_ROLES.get(i))
                .map_or(channel.channel_label.clone(), |r| (*r).to_owned());
            let mut words = String::new();
            for item in &channel.items {
                let Some(word) = item.alternatives.first() else {
                    continue;
                };
                // Punctuation sticks to the word before it.
                if !words.is_empty() && item.kind != "punctuation" {
                    words.push(' ');
                }
                words.push_str(&word.content);
            }
            (role, words)
        })
        .collect();
    Ok(TranscriptOutcome::Completed { text, channels })
}

/// The transcript worker: Transcribe's state changes (via EventBridge) and Twilio's own
/// transcriptions, both onto the recording's item.
pub struct TranscriptWorker {
    pub transcriber: Transcriber,
    pub s3: aws_sdk_s3::Client,
    pub store: DynamoRecordingStore,
    pub bucket: String,
}

impl TranscriptWorker {
    /// Decides one message. Logs what it decided when it is not done.
    pub async fn handle(&self, body: &str) -> Disposition {
        let disposition = self.decide(body).await;
        match &disposition {
            Disposition::Done | Disposition::Continue { .. } => {}
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

    async fn decide(&self, body: &str) -> Disposition {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_event_is_read_and_anything_else_is_not() {
        let event = r#"{"version":"0","id":"1","detail-type":"Transcribe Job State Change","source":"aws.transcribe","account":"123456789012","time":"2026-11-23T00:00:00Z","region":"us-east-1","resources":[],"detail":{"TranscriptionJobName":"RE1","TranscriptionJobStatus":"FAILED","FailureReason":"Unsupported media format."}}"#;
        let change = JobStateChange::from_event(event).unwrap();
        assert_eq!(change.job_name, "RE1");
        assert_eq!(change.status, "FAILED");
        assert_eq!(
            change.failure_reason.as_deref(),
            Some("Unsupported media format.")
        );
        assert!(JobStateChange::from_event(&event.replace("aws.transcribe", "aws.s3")).is_none());
        assert!(JobStateChange::from_event(r#"{"v":1,"kind":"call.status"}"#).is_none());
    }

    #[test]
    fn channels_are_told_apart_by_role() {
        let document = br#"{"jobName":"RE1","accountId":"1","status":"COMPLETED","results":{
            "transcripts":[{"transcript":"Hello, thanks for calling. Hi there."}],
            "channel_labels":{"number_of_channels":2,"channels":[
              {"channel_label":"ch_0","items":[
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"Hi"}]},
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"there"}]},
                {"type":"punctuation","alternatives":[{"confidence":"0.0","content":"."}]}]},
              {"channel_label":"ch_1","items":[
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"Hello"}]},
                {"type":"punctuation","alternatives":[{"confidence":"0.0","content":","}]},
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"thanks"}]}]}]},
            "items":[]}}"#;
        let TranscriptOutcome::Completed { text, channels } = read_transcript(document).unwrap()
        else {
            panic!("a completed document")
        };
        assert_eq!(text, "Hello, thanks for calling. Hi there.");
        assert_eq!(
            channels,
            [
                ("caller".to_owned(), "Hi there.".to_owned()),
                ("agent".to_owned(), "Hello, thanks".to_owned())
            ]
        );
        assert!(read_transcript(b"{}").is_err());
    }
}
