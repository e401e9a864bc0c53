//! The recording worker: for each `recording.status` event, a byte-exact private copy in S3,
//! the recording's item beside its call, optionally Twilio's copy deleted, and a Transcribe
//! job started; once, whatever Twilio or SQS redeliver.
//!
//! A redelivery finds the item archived and skips the download; the S3 key is a function of
//! the recording, so a crash between upload and item write only overwrites the same object;
//! the job is named after the recording, so Transcribe refuses a second one.
//!
//! How a media failure is handled (see [`FetchError`]): 404 right after the callback, 429 and
//! 5xx are retried in the invocation with exponential backoff and jitter (honouring
//! `Retry-After`), then the message is retried later with a longer, jittered delay, up to the
//! queue's maxReceiveCount; 401/403 and a URL off the allow-list go straight to the DLQ with
//! the reason: no retry fixes them, and a hot loop would only hammer Twilio.

use crate::metrics::{self, name};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use super::keys::RecordingKey;
use super::{
    DynamoRecordingStore, RecordingRecord, RecordingRef, RecordingStore, Trouble, epoch_ms,
};
use crate::config::{MediaFormat, RecordingWorkerConfig};
use crate::events::{Envelope, EventKind};
use crate::recording::media::{
    ArchiveOutcome, ArchiveTarget, BasicAuth, FetchError, MediaHosts, UploadProgress,
    archive_resumable, fetch, from_offset,
};
use crate::secrets::AuthTokens;
use crate::transcribe::{JobStart, Transcriber, TranscriptionRequest};
use crate::twilio::{RecordingCallback, RecordingStatus};
use crate::worker::{
    BatchWorker, Budget, Disposition, Fate, FateNotes, Pace, QueuedMessage, decide_by,
};

/// Longest `Retry-After` waited out inside an invocation; a longer one delays the message.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);
const SECOND: Duration = Duration::from_secs(1);

/// How this deployment archives.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub bucket: String,
    pub kms_key_id: Option<String>,
    pub format: MediaFormat,
    /// `RequestedChannels` for the media URL.
    pub channels: Option<u32>,
    pub delete_from_twilio: bool,
}

impl From<&RecordingWorkerConfig> for ArchiveSettings {
    fn from(config: &RecordingWorkerConfig) -> Self {
        Self {
            bucket: config.bucket.clone(),
            kms_key_id: config.kms_key_id.clone(),
            format: config.format,
            channels: config.channels,
            delete_from_twilio: config.delete_from_twilio,
        }
    }
}

/// What shows the S3 copy is whole before Twilio's copy may go.
enum S3Copy {
    /// Written by this invocation: S3 accepted every byte against the SHA-256 the request
    /// carried (a mismatch is 400 `BadDigest`, nothing stored), so its answer is the proof
    /// and a `HeadObject` would only ask again.
    JustWritten,
    /// Recorded as archived by an earlier invocation: a `HeadObject` checks that the object
    /// is still there, with the size archived and its SHA-256.
    Earlier { bytes: Option<u64> },
}

/// Everything the worker uses, built once per cold start.
pub struct RecordingWorker<T, S = DynamoRecordingStore> {
    pub http: reqwest::Client,
    pub hosts: MediaHosts,
    pub tokens: T,
    pub s3: aws_sdk_s3::Client,
    pub store: S,
    /// `None` when transcription is off.
    pub transcriber: Option<Transcriber>,
    pub settings: ArchiveSettings,
    /// In-invocation retries of a media download.
    pub fetch_backoff: ExponentialBuilder,
    /// Its measured time per message.
    pub pace: Pace,
}

/// The default in-invocation backoff: 0.5, 1, 2 s (jittered), then the message is retried
/// later.
pub fn default_fetch_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(4))
        .with_max_times(3)
        .with_jitter()
}

/// The HTTP client for Twilio media: connections reused across invocations, and a redirect
/// followed only to a host the allow-list accepts (reqwest drops the Authorization header
/// when a redirect changes host).
pub fn media_client(hosts: &MediaHosts) -> reqwest::Client {
    let hosts = hosts.clone();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("too many redirects")
            } else if hosts.check(attempt.url().as_str()).is_ok() {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .expect("a client with static settings builds")
}

/// The envelope of a `recording.status` event.
fn decode(body: &str) -> Result<Envelope, String> {
    let envelope = Envelope::from_json(body).map_err(|e| e.to_string())?;
    if envelope.kind != EventKind::RecordingStatus {
        return Err(format!(
            "envelope kind {} does not belong on the recording queue",
            envelope.kind.as_str()
        ));
    }
    Ok(envelope)
}

fn recording_ref<'a>(callback: &RecordingCallback<'a>) -> RecordingRef<'a> {
    RecordingRef {
        account_sid: callback.account_sid,
        call_sid: callback.call_sid,
        recording_sid: callback.recording_sid,
        duration_secs: callback.duration_secs,
        channels: callback.channels,
        source: callback.source,
    }
}

/// A recording's trouble goes on its item before the settler moves the message, so
/// `voicectl call` says what is happening: retrying (receive n of m, next at …),
/// dead-lettered (why) or refused. One write, and only when something went wrong.
impl<T: AuthTokens, S: RecordingStore> FateNotes for RecordingWorker<T, S> {
    async fn note(&self, message: &QueuedMessage<'_>, fate: &Fate) {
        let trouble = |state: &str, reason: &str| Trouble {
            state: state.to_owned(),
            reason: reason.to_owned(),
            receive: None,
            max_receives: None,
            next_at: None,
            at: crate::events::now_rfc3339(),
        };
        let trouble = match fate {
            Fate::Done | Fate::SentOn { .. } | Fate::HandedBack => return,
            Fate::Retry {
                reason,
                receive,
                max_receives,
                after,
            } => Trouble {
                receive: Some(*receive),
                max_receives: Some(*max_receives),
                next_at: Some(crate::events::rfc3339_in(*after)),
                ..trouble("retrying", reason)
            },
            Fate::DeadLetter { reason, .. }
                if reason.starts_with(crate::recording::media::REFUSED) =>
            {
                trouble("refused", reason)
            }
            Fate::DeadLetter { reason, .. } => trouble("dead-lettered", reason),
        };
        let Ok(envelope) = decode(message.body) else {
            return;
        };
        let Ok(callback) = RecordingCallback::parse(&envelope.params) else {
            return;
        };
        if let Err(e) = self
            .store
            .record_trouble(&recording_ref(&callback), &trouble)
            .await
        {
            tracing::warn!(
                recording_sid = callback.recording_sid,
                error = %e,
                "could not note the recording's trouble; the DLQ and logs still have it"
            );
        }
    }
}

impl<T: AuthTokens, S: RecordingStore> BatchWorker for RecordingWorker<T, S> {
    fn pace(&self) -> &Pace {
        &self.pace
    }

    /// Each message on its own, all at once.
    async fn decide<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        budget: &Budget<'_>,
    ) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
        let decisions = messages
            .iter()
            .map(|m| self.handle(m.body, budget.deadline()));
        decide_by(messages, budget, decisions).await
    }
}

impl<T: AuthTokens, S: RecordingStore> RecordingWorker<T, S> {
    /// Decides one message, within `deadline` (the invocation's, less the settling margin).
    /// Logs what it decided.
    pub async fn handle(&self, body: &str, deadline: Instant) -> Disposition {
        let envelope = match decode(body) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::error!(outcome = "dead-letter", reason, "not a recording event");
                return Disposition::dead_letter(reason);
            }
        };
        let callback = match RecordingCallback::parse(&envelope.params) {
            Ok(callback) => callback,
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(outcome = "dead-letter", reason, "not a recording event");
                return Disposition::dead_letter(reason);
            }
        };
        let disposition = match callback.status {
            RecordingStatus::Completed => {
                self.archive_and_transcribe(&envelope.received_at, &callback, deadline)
                    .await
            }
            status => match self
                .store
                .record_status(&recording_ref(&callback), status, callback.error_code)
                .await
            {
                Ok(_) => Disposition::Done,
                Err(e) => Disposition::retry(e),
            },
        };
        let reason = disposition.reason();
        let (call_sid, recording_sid) = (callback.call_sid, callback.recording_sid);
        let status = callback.status.as_str();
        match disposition {
            Disposition::Done => tracing::info!(
                call_sid,
                recording_sid,
                status,
                outcome = "done",
                "recording event processed"
            ),
            Disposition::Retry { .. } => tracing::warn!(
                call_sid,
                recording_sid,
                status,
                outcome = "retry",
                reason,
                "recording event will be retried"
            ),
            Disposition::DeadLetter { .. } => tracing::error!(
                call_sid,
                recording_sid,
                status,
                outcome = "dead-letter",
                reason,
                "recording event sent to the DLQ"
            ),
            // Decided by the budget, never here.
            Disposition::NotStarted => {}
            Disposition::Continue { .. } => tracing::info!(
                call_sid,
                recording_sid,
                status,
                outcome = "continue",
                reason,
                "recording archive goes on in the next invocation"
            ),
        }
        disposition
    }

    async fn archive_and_transcribe(
        &self,
        received_at: &str,
        callback: &RecordingCallback<'_>,
        deadline: Instant,
    ) -> Disposition {
        match self
            .archive_delete_transcribe(received_at, callback, deadline)
            .await
        {
            Ok(()) => Disposition::Done,
            Err(disposition) => disposition,
        }
    }

    /// The three steps, each skipped when the item says it is done: the S3 copy, Twilio's
    /// copy deleted, the transcription started. A step that cannot finish says what to do
    /// with the message.
    async fn archive_delete_transcribe(
        &self,
        received_at: &str,
        callback: &RecordingCallback<'_>,
        deadline: Instant,
    ) -> Result<(), Disposition> {
        let recording = recording_ref(callback);
        let key = RecordingKey::new(
            callback.account_sid,
            callback.call_sid,
            callback.recording_sid,
            callback.started_at,
            received_at,
        );
        let stored = self
            .store
            .get(callback.call_sid, callback.recording_sid)
            .await
            .map_err(Disposition::retry)?
            .unwrap_or_default();
        let media_key = key.audio(self.settings.format.extension());
        let (auth, copy) = if stored.is_archived() {
            (
                None,
                S3Copy::Earlier {
                    bytes: stored.bytes,
                },
            )
        } else {
            let auth = self
                .copy_to_s3(callback, &recording, &stored, &media_key, deadline)
                .await?;
            (Some(auth), S3Copy::JustWritten)
        };
        if self.settings.delete_from_twilio && !stored.deleted_from_twilio {
            let auth = match auth {
                Some(auth) => auth,
                None => self.basic_auth().await?,
            };
            self.delete_from_twilio(&recording, copy, &media_key, callback, &auth)
                .await?;
        }
        if let Some(transcriber) = &self.transcriber
            && stored.transcription_job.is_none()
        {
            self.start_transcription(transcriber, callback, &recording, &key, &media_key)
                .await?;
        }
        Ok(())
    }

    /// The credentials media requests carry (the API key when the secret has one).
    async fn basic_auth(&self) -> Result<BasicAuth, Disposition> {
        let credentials = self.tokens.current().await.map_err(Disposition::retry)?;
        Ok(credentials.basic_auth())
    }

    /// Twilio's media streamed into S3 (resuming an upload an earlier invocation paused),
    /// and the archive recorded on the item. Returns the credentials used, for the delete.
    async fn copy_to_s3(
        &self,
        callback: &RecordingCallback<'_>,
        recording: &RecordingRef<'_>,
        stored: &RecordingRecord,
        media_key: &str,
        deadline: Instant,
    ) -> Result<BasicAuth, Disposition> {
        let basic = self.basic_auth().await?;
        let media_url = self.media_url(&self.resource(callback)?);
        // Another invocation is on this long download: its lease ends with its deadline.
        if let Some(until) = stored.lease_until_ms.filter(|&until| until > epoch_ms()) {
            return Err(Disposition::Retry {
                reason: "another invocation is archiving it".into(),
                after: Some(Duration::from_millis(until - epoch_ms()).max(SECOND)),
            });
        }
        let resume = stored.upload.clone();
        let offset = resume.as_ref().map_or(0, |p| p.bytes);
        let response = self.fetch_media(&media_url, &basic, offset).await?;
        // A download that takes more than one part is marked as this invocation's, until
        // its deadline, so a second delivery waits instead of fetching it twice.
        let long = resume.is_some()
            || response
                .content_length()
                .is_some_and(|len| len > crate::recording::media::PART_SIZE as u64);
        if long {
            self.lease(recording, deadline).await?;
        }
        let archived = match self
            .archive(response, media_key, callback, (resume, offset), deadline)
            .await
        {
            Ok(ArchiveOutcome::Done(archived)) => archived,
            Ok(ArchiveOutcome::Paused(progress)) => {
                let reason = format!(
                    "archived {} of the recording in {} parts by the deadline",
                    progress.bytes,
                    progress.parts.len()
                );
                self.store
                    .save_progress(recording, Some(&progress))
                    .await
                    .map_err(Disposition::retry)?;
                return Err(Disposition::Continue {
                    reason,
                    after: SECOND,
                });
            }
            Err(disposition) => {
                // The upload was aborted: the next try starts again from the first byte.
                if long {
                    self.store
                        .save_progress(recording, None)
                        .await
                        .map_err(Disposition::retry)?;
                }
                return Err(disposition);
            }
        };
        tracing::info!(
            call_sid = callback.call_sid,
            recording_sid = callback.recording_sid,
            bytes = archived.bytes,
            parts = archived.parts,
            s3_key = archived.key,
            outcome = "archived",
            "recording archived"
        );
        metrics::count(name::RECORDINGS_ARCHIVED, 1);
        metrics::bytes(name::RECORDING_BYTES, archived.bytes);
        self.store
            .record_archived(recording, &archived)
            .await
            .map_err(Disposition::retry)?;
        Ok(basic)
    }

    /// Marks a long download as this invocation's until its deadline.
    async fn lease(
        &self,
        recording: &RecordingRef<'_>,
        deadline: Instant,
    ) -> Result<(), Disposition> {
        let until = epoch_ms()
            + deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
        match self.store.take_lease(recording, until).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Disposition::Retry {
                reason: "another invocation is archiving it".into(),
                after: None,
            }),
            Err(e) => Err(Disposition::retry(e)),
        }
    }

    /// The Transcribe job for the archived audio (a second start is Transcribe's conflict,
    /// taken as "already started"), noted on the item.
    async fn start_transcription(
        &self,
        transcriber: &Transcriber,
        callback: &RecordingCallback<'_>,
        recording: &RecordingRef<'_>,
        key: &RecordingKey,
        media_key: &str,
    ) -> Result<(), Disposition> {
        let request = TranscriptionRequest {
            job_name: callback.recording_sid,
            bucket: &self.settings.bucket,
            media_key,
            output_key: &key.transcript(),
            format: self.settings.format,
            channels: self.settings.channels.or(callback.channels),
        };
        let start = transcriber
            .start(&request)
            .await
            .map_err(Disposition::retry)?;
        tracing::info!(
            call_sid = callback.call_sid,
            recording_sid = callback.recording_sid,
            outcome = match start {
                JobStart::Started => "transcription-started",
                JobStart::AlreadyExists => "transcription-exists",
            },
            "transcription job"
        );
        self.store
            .record_transcription_started(recording, callback.recording_sid)
            .await
            .map_err(Disposition::retry)
    }

    /// The recording's own resource on Twilio (`MediaHosts::recording_resource`); any other
    /// `RecordingUrl` is a dead letter with its reason, and no request is sent.
    fn resource(&self, callback: &RecordingCallback<'_>) -> Result<String, Disposition> {
        self.hosts
            .recording_resource(
                callback.url.unwrap_or_default(),
                callback.account_sid,
                callback.recording_sid,
            )
            .map_err(|e| {
                Disposition::dead_letter(format!(
                    "{e}: a recording callback may only name /2010-04-01/Accounts/{}/Recordings/{}",
                    callback.account_sid, callback.recording_sid
                ))
            })
    }

    /// `RecordingUrl` + extension (+ `RequestedChannels`).
    fn media_url(&self, recording_url: &str) -> String {
        let mut url = format!("{recording_url}.{}", self.settings.format.extension());
        if let Some(channels) = self.settings.channels {
            url.push_str(&format!("?RequestedChannels={channels}"));
        }
        url
    }

    async fn fetch_media(
        &self,
        url: &str,
        auth: &BasicAuth,
        offset: u64,
    ) -> Result<reqwest::Response, Disposition> {
        let mut wait_longer = None;
        let result = (|| fetch(&self.http, &self.hosts, url, auth, offset))
            .retry(self.fetch_backoff)
            .when(|e| {
                matches!(
                    e,
                    FetchError::NotReady | FetchError::RateLimited(_) | FetchError::Transient(_)
                )
            })
            .adjust(|e, delay| match (e, delay) {
                (FetchError::RateLimited(Some(after)), Some(_)) if *after > MAX_INLINE_WAIT => {
                    wait_longer = Some(*after);
                    None
                }
                (FetchError::RateLimited(Some(after)), Some(delay)) => {
                    Some((*after).max(delay).mul_f64(1.0 + fastrand::f64() * 0.2))
                }
                (_, delay) => delay,
            })
            .notify(
                |e, delay| tracing::info!(reason = %e, ?delay, "media not fetched yet; retrying"),
            )
            .await;
        let refreshed = match result {
            Ok(response) => return Ok(response),
            // The token may have been rotated since it was cached: one more try with a fresh
            // read, then it is the operator's to fix.
            Err(FetchError::Credentials(status)) => match self.tokens.refresh_current().await {
                Ok(Some(fresh)) => {
                    fetch(&self.http, &self.hosts, url, &fresh.basic_auth(), offset).await
                }
                _ => Err(FetchError::Credentials(status)),
            },
            Err(e) => Err(e),
        };
        match refreshed {
            Ok(response) => Ok(response),
            Err(
                e @ (FetchError::Credentials(_)
                | FetchError::Refused(_)
                | FetchError::RedirectRefused(_)),
            ) => Err(Disposition::dead_letter(e)),
            Err(FetchError::RateLimited(after)) => Err(Disposition::Retry {
                reason: FetchError::RateLimited(after).to_string(),
                after: wait_longer
                    .or(after)
                    .map(|a| a.mul_f64(1.0 + fastrand::f64() * 0.2)),
            }),
            Err(e) => Err(Disposition::retry(e)),
        }
    }

    async fn archive(
        &self,
        response: reqwest::Response,
        key: &str,
        callback: &RecordingCallback<'_>,
        (resume, offset): (Option<UploadProgress>, u64),
        deadline: Instant,
    ) -> Result<ArchiveOutcome, Disposition> {
        let mut metadata = HashMap::from([
            ("call-sid".to_owned(), callback.call_sid.to_owned()),
            (
                "recording-sid".to_owned(),
                callback.recording_sid.to_owned(),
            ),
            ("account-sid".to_owned(), callback.account_sid.to_owned()),
        ]);
        let optional = [
            ("duration", callback.duration_secs.map(|d| d.to_string())),
            ("channels", callback.channels.map(|c| c.to_string())),
            ("source", callback.source.map(str::to_owned)),
        ];
        metadata.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?))),
        );
        let target = ArchiveTarget {
            bucket: self.settings.bucket.clone(),
            key: key.to_owned(),
            content_type: self.settings.format.content_type().to_owned(),
            kms_key_id: self.settings.kms_key_id.clone(),
            metadata,
        };
        let body = from_offset(response, offset).map_err(Disposition::retry)?;
        archive_resumable(&self.s3, &target, body, resume, Some(deadline))
            .await
            .map_err(Disposition::retry)
    }

    /// Deletes Twilio's copy once ours is verified (see [`S3Copy`]).
    async fn delete_from_twilio(
        &self,
        recording: &RecordingRef<'_>,
        copy: S3Copy,
        key: &str,
        callback: &RecordingCallback<'_>,
        auth: &BasicAuth,
    ) -> Result<(), Disposition> {
        if let S3Copy::Earlier { bytes: expected } = copy {
            let head = self
                .s3
                .head_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .map_err(|e| Disposition::retry(crate::aws::error_summary(&e)))?;
            let verified = expected.is_some()
                && head.content_length.map(|l| l as u64) == expected
                && head.checksum_sha256.is_some();
            if !verified {
                return Err(Disposition::retry(format!(
                    "the S3 copy of {} is not verified (size {:?}, expected {expected:?}); Twilio's copy is kept",
                    callback.recording_sid, head.content_length
                )));
            }
        }
        let url = self.resource(callback)?;
        let response = self
            .http
            .delete(url)
            .basic_auth(&auth.username, Some(&auth.password))
            .send()
            .await
            .map_err(|e| Disposition::retry(format!("deleting Twilio's copy: {e}")))?;
        // 404: already gone (a redelivery after the delete).
        match response.status().as_u16() {
            200..=299 | 404 => {}
            401 | 403 => {
                return Err(Disposition::dead_letter(format!(
                    "Twilio refused the delete (HTTP {}): the credentials lack the right",
                    response.status()
                )));
            }
            other => {
                return Err(Disposition::retry(format!(
                    "deleting Twilio's copy answered HTTP {other}"
                )));
            }
        }
        self.store
            .record_deleted_from_twilio(recording)
            .await
            .map_err(Disposition::retry)
    }
}
