//! Amazon Transcribe: starting a job per recording, and reading what a finished job left.
//!
//! A job is named after the RecordingSid, so a second start for one recording is refused by
//! Transcribe itself (`ConflictException`) and never makes a second job. When a job ends,
//! EventBridge sends "Transcribe Job State Change" with only the job's name and status
//! (<https://docs.aws.amazon.com/transcribe/latest/dg/monitoring-events.html>);
//! `GetTranscriptionJob` gives where its media and transcript are, and the media's key
//! says which call it belongs to.
//!
//! Here: [`Transcriber`], the adapter that starts and reads jobs; `events`, the
//! EventBridge event; `transcript`, Transcribe's output document; `worker`, the
//! transcript worker that puts them together on the recording's item.

mod events;
mod transcript;
mod worker;

pub use events::{JobStateChange, STATE_CHANGE_DETAIL_TYPE};
pub use transcript::{CHANNEL_ROLES, read_transcript};
pub use worker::TranscriptWorker;

use aws_sdk_transcribe::Client;
use aws_sdk_transcribe::operation::start_transcription_job::StartTranscriptionJobError;
use aws_sdk_transcribe::types::{
    ContentRedaction, LanguageCode, Media, MediaFormat as TranscribeFormat, RedactionOutput,
    RedactionType, Settings,
};

use crate::config::MediaFormat;

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
