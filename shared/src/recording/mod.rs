//! Recordings: what is kept of each one beside its call, and the rules it is kept by.
//!
//! Every write is idempotent (a redelivery sets the same values) and none moves a recording
//! backwards: Twilio's `in-progress` is kept only on a new recording, `absent` / `failed` only
//! before our archive, and once archived a late callback changes nothing ([`status_may_move`]).
//! One invocation at a time holds a recording's long download ([`lease_is_free`]), and a
//! transcript too long for the item keeps a preview ([`InlineTranscript`]).
//!
//! The domain lives here, behind [`RecordingStore`]: [`dynamodb`] keeps recordings in
//! DynamoDB, [`memory`] in memory, by the same rules (`tests/recording_store.rs` holds both
//! to the same outcomes). [`worker`] archives and transcribes a recording, [`media`] moves its
//! bytes from Twilio to S3, [`keys`] names its objects.

pub mod dynamodb;
pub mod keys;
pub mod media;
pub mod memory;
pub mod worker;

use serde::Serialize;

use crate::calls::StoreError;
use crate::twilio::RecordingStatus;
use media::{Archived, UploadProgress};

pub use dynamodb::DynamoRecordingStore;
pub use memory::MemoryRecordingStore;
pub use worker::{ArchiveSettings, RecordingWorker, default_fetch_backoff, media_client};

/// What is known of a recording when its callback arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRef<'a> {
    pub account_sid: &'a str,
    pub call_sid: &'a str,
    pub recording_sid: &'a str,
    pub duration_secs: Option<u32>,
    pub channels: Option<u32>,
    pub source: Option<&'a str>,
}

/// A Transcribe job's result, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TranscriptOutcome {
    Completed {
        text: String,
        /// Per channel, by role (`caller`, `agent`) for dual-channel audio.
        channels: Vec<(String, String)>,
    },
    Failed {
        reason: String,
    },
}

/// A recording as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordingRecord {
    pub call_sid: String,
    pub recording_sid: String,
    /// `in-progress`, `absent`, `failed` (Twilio's word) or `archived` (ours).
    pub state: Option<String>,
    pub duration_secs: Option<u64>,
    pub channels: Option<u64>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub deleted_from_twilio: bool,
    pub transcription_job: Option<String>,
    /// Transcribe's word: `IN_PROGRESS`, `COMPLETED`, `FAILED`.
    pub transcription_status: Option<String>,
    /// The whole transcript, or its first [`TRANSCRIPT_PREVIEW_CHARS`] when it was too long
    /// for the item (`transcript_truncated`; the whole is at `transcript_s3_key`).
    pub transcript_text: Option<String>,
    /// Per channel by role; empty when the transcript is too long for the item.
    pub transcript_channels: Vec<(String, String)>,
    /// Transcribe's output document, which holds the whole transcript and its channels.
    pub transcript_s3_key: Option<String>,
    pub transcript_truncated: bool,
    pub transcription_failure: Option<String>,
    /// An archive cut short by a deadline, to be finished by a later invocation.
    pub upload: Option<UploadProgress>,
    /// Until when (ms since the epoch) an invocation holds the long download: the invocation's
    /// own deadline, so a run that dies never leaves the recording stuck "in progress".
    pub lease_until_ms: Option<u64>,
    /// Twilio's own `<Record transcribe>` result.
    pub twilio_transcription_status: Option<String>,
    pub twilio_transcription_text: Option<String>,
    /// Twilio's `ErrorCode` for a recording it did not finish (`16101` too short, `16102`
    /// silent and deleted, for `absent`).
    pub error_code: Option<String>,
    /// What the recording worker last decided about a recording it could not archive yet;
    /// cleared once archived.
    pub trouble: Option<Trouble>,
}

/// Why a recording is not archived, as its worker last left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Trouble {
    /// `retrying`, `dead-lettered` or `refused` (dead-lettered, its URL off the allow-list).
    pub state: String,
    /// The reason, with its causes.
    pub reason: String,
    /// Retrying: this was receive `receive` of `max_receives`, the next due at `next_at`
    /// (RFC 3339).
    pub receive: Option<u32>,
    pub max_receives: Option<u32>,
    pub next_at: Option<String>,
    /// When the worker decided (RFC 3339).
    pub at: String,
}

impl RecordingRecord {
    pub fn is_archived(&self) -> bool {
        self.state.as_deref() == Some("archived") && self.s3_key.is_some()
    }
}

pub const ARCHIVED: &str = "archived";

/// Now, in ms since the epoch (leases are compared with DynamoDB conditions).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The most transcript text (the whole, plus each channel's copy) kept on the recording's
/// item. A four-hour call's transcript is hundreds of KB, twice over with the channels:
/// past this the item keeps a preview and points at Transcribe's output in S3, so it stays
/// far below DynamoDB's 400 KB.
pub const INLINE_TRANSCRIPT_BYTES: usize = 32 * 1024;
/// What a transcript too long for the item keeps of its beginning.
pub const TRANSCRIPT_PREVIEW_CHARS: usize = 1000;

/// Whether Twilio's `status` may replace the recording's `state`: `in-progress` only on a new
/// recording, `absent` / `failed` only before the recording is ours. The DynamoDB store's
/// condition says the same.
pub fn status_may_move(state: Option<&str>, status: RecordingStatus) -> bool {
    match status {
        RecordingStatus::InProgress => state.is_none(),
        _ => state.is_none_or(|state| state == RecordingStatus::InProgress.as_str()),
    }
}

/// Whether an invocation may take the download's lease at `now_ms`: nobody holds it, or the
/// holder's deadline has passed.
pub fn lease_is_free(lease_until_ms: Option<u64>, now_ms: u64) -> bool {
    lease_until_ms.is_none_or(|until| until < now_ms)
}

/// What the recording's item keeps of a completed transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineTranscript {
    /// The whole text, or its first [`TRANSCRIPT_PREVIEW_CHARS`].
    pub text: String,
    /// Per channel; empty when the transcript is too long for the item.
    pub channels: Vec<(String, String)>,
    /// The item holds a preview; the whole is in Transcribe's output document.
    pub truncated: bool,
}

impl InlineTranscript {
    pub fn of(text: &str, channels: &[(String, String)]) -> Self {
        let size = text.len() + channels.iter().map(|(_, t)| t.len()).sum::<usize>();
        if size <= INLINE_TRANSCRIPT_BYTES {
            Self {
                text: text.to_owned(),
                channels: channels.to_vec(),
                truncated: false,
            }
        } else {
            Self {
                text: text.chars().take(TRANSCRIPT_PREVIEW_CHARS).collect(),
                channels: Vec::new(),
                truncated: true,
            }
        }
    }
}

/// Where recordings are kept. Each write is one conditional or idempotent update of the
/// recording: safe to repeat, whichever arrives first.
pub trait RecordingStore: Send + Sync {
    /// Records Twilio's status of a recording that is not (yet) ours ([`status_may_move`]).
    /// `Ok(false)`: nothing changed.
    fn record_status(
        &self,
        recording: &RecordingRef<'_>,
        status: RecordingStatus,
        error_code: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the recording's long download as this invocation's until `until_ms` (its
    /// deadline), unless another holds it now. `Ok(false)`: another invocation does.
    fn take_lease(
        &self,
        recording: &RecordingRef<'_>,
        until_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Keeps how far the archive got and releases the lease: the next invocation resumes.
    /// `None` forgets an upload that was aborted.
    fn save_progress(
        &self,
        recording: &RecordingRef<'_>,
        progress: Option<&UploadProgress>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Why the recording is not archived yet (a retry, a dead letter), for `voicectl call`.
    /// Written only when something went wrong, never on the way to an archive.
    fn record_trouble(
        &self,
        recording: &RecordingRef<'_>,
        trouble: &Trouble,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Our copy is in S3: the upload, the trouble and the lease are cleared.
    fn record_archived(
        &self,
        recording: &RecordingRef<'_>,
        archived: &Archived,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn record_deleted_from_twilio(
        &self,
        recording: &RecordingRef<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A Transcribe job exists for the recording. Its status is set only if no result
    /// arrived first (the state-change event can beat this write).
    fn record_transcription_started(
        &self,
        recording: &RecordingRef<'_>,
        job: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A Transcribe job finished; its output document is at `document_key` in the bucket.
    fn record_transcript(
        &self,
        ids: (&str, &str),
        job: &str,
        outcome: &TranscriptOutcome,
        document_key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Twilio's own transcription (`<Record transcribe>`) of the recording.
    fn record_twilio_transcription(
        &self,
        recording: &RecordingRef<'_>,
        transcription_sid: &str,
        status: &str,
        text: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One recording, as last written (the worker decides on it).
    fn get(
        &self,
        call_sid: &str,
        recording_sid: &str,
    ) -> impl Future<Output = Result<Option<RecordingRecord>, StoreError>> + Send;

    /// Every recording of a call, by RecordingSid.
    fn for_call(
        &self,
        call_sid: &str,
    ) -> impl Future<Output = Result<Vec<RecordingRecord>, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecordingStatus::*;

    #[test]
    fn a_status_never_moves_a_recording_backwards() {
        assert!(status_may_move(None, InProgress));
        assert!(!status_may_move(Some("in-progress"), InProgress));
        assert!(status_may_move(Some("in-progress"), Absent));
        assert!(status_may_move(None, Failed));
        assert!(!status_may_move(Some(ARCHIVED), Absent));
        assert!(!status_may_move(Some(ARCHIVED), Completed));
        assert!(!status_may_move(Some("absent"), Failed));
    }

    #[test]
    fn a_lease_is_free_once_its_holder_deadline_passed() {
        assert!(lease_is_free(None, 10));
        assert!(lease_is_free(Some(0), 10));
        assert!(!lease_is_free(Some(10), 10));
        assert!(!lease_is_free(Some(11), 10));
    }

    #[test]
    fn a_transcript_too_long_for_the_item_keeps_a_preview_without_channels() {
        let channels = vec![("caller".to_owned(), "hello".to_owned())];
        let short = InlineTranscript::of("hello", &channels);
        assert_eq!((short.text.as_str(), short.truncated), ("hello", false));
        assert_eq!(short.channels, channels);

        let long = "é".repeat(INLINE_TRANSCRIPT_BYTES);
        let kept = InlineTranscript::of(&long, &channels);
        assert!(kept.truncated && kept.channels.is_empty());
        assert_eq!(kept.text.chars().count(), TRANSCRIPT_PREVIEW_CHARS);
    }
}
