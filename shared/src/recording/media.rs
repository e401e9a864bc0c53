//! Recording media: fetched from Twilio's API hosts only, streamed into S3.
//!
//! The fetch is refused unless the URL is on an allow-listed Twilio API host (no SSRF through
//! a forged `RecordingUrl`), and its failures are sorted by what the worker should do about
//! them. A recording that fits in one part (most do) is one `PutObject` carrying its SHA-256;
//! a longer one is an S3 multipart upload with a SHA-256 checksum per part, fed as the bytes
//! arrive, so memory stays at one part whatever the recording's size. S3 checks each
//! checksum against what it received (400 `BadDigest` otherwise), and on any failure the
//! upload is aborted: no object, partial or whole, becomes visible.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

/// S3's smallest part (but the last); 8 MiB keeps the request count low and memory flat.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where recording media may be fetched from.
#[derive(Debug, Clone, Default)]
pub struct MediaHosts {
    /// One more `host:port`, served over plain HTTP: the local Twilio stand-in. Never set in
    /// a deployed stack.
    local: Option<String>,
}

/// How every refusal of a URL (off the allow-list, or a redirect to one) begins: such a
/// recording is "refused", not merely dead-lettered, in `voicectl call`.
pub const REFUSED: &str = "refused to ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Not a Twilio API URL: refused before any request is made.
    #[error("refused to fetch {0}: not a Twilio API host")]
    Refused(String),
    /// 404 right after the callback: the media is not ready yet. Retry with backoff.
    #[error("recording not ready (404)")]
    NotReady,
    /// 429: back off, at least this long when Twilio says.
    #[error("rate limited by Twilio (429)")]
    RateLimited(Option<Duration>),
    /// 401/403: the credentials are wrong or lack access. Retrying will not help.
    #[error("Twilio refused the credentials ({0})")]
    Credentials(u16),
    /// 5xx, timeouts, connection errors: retry.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Twilio redirected to a host off the allow-list: refused, the redirect not followed.
    #[error("refused to follow a redirect to {0}: not a Twilio API host")]
    RedirectRefused(String),
    /// Any other answer: the message cannot succeed as it is.
    #[error("unexpected answer {0}")]
    Unexpected(u16),
}

impl MediaHosts {
    /// Twilio's API hosts: `api.twilio.com`, `api.<region>.twilio.com` and
    /// `api.<edge>.<region>.twilio.com` (e.g. `api.dublin.ie1.twilio.com`), over HTTPS.
    /// <https://www.twilio.com/docs/global-infrastructure/edge-locations>
    pub fn twilio() -> Self {
        Self::default()
    }

    /// Also allows `host:port` over HTTP, for the local stand-in.
    pub fn with_local(host_port: impl Into<String>) -> Self {
        Self {
            local: Some(host_port.into()),
        }
    }

    /// The recording's own resource, `RecordingUrl` as Twilio sends it:
    /// `/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}` for the callback's own
    /// SIDs on an allowed host, with no query, no fragment and nothing else in the path. The
    /// only URL the worker fetches (with an extension) and deletes: a signed callback with
    /// any other URL (another recording, a phone number, `..`) gets no request at all, since
    /// a DELETE with the account's credentials elsewhere could release a number.
    pub fn recording_resource(
        &self,
        url: &str,
        account_sid: &str,
        recording_sid: &str,
    ) -> Result<String, FetchError> {
        let refused = || FetchError::Refused(url.chars().take(200).collect());
        let parsed = self.check(url)?;
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_owned(),
        };
        let canonical = format!(
            "{}://{host}/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}",
            parsed.scheme()
        );
        // Compared with the URL as sent, not as parsed: parsing resolves `..` and escapes.
        if url == canonical {
            Ok(canonical)
        } else {
            Err(refused())
        }
    }

    /// The URL if it may be fetched.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        let refused = || FetchError::Refused(url.chars().take(200).collect());
        let parsed = reqwest::Url::parse(url).map_err(|_| refused())?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused());
        }
        let host = parsed.host_str().unwrap_or_default();
        let allowed = match parsed.scheme() {
            "https" => parsed.port().is_none() && is_twilio_api_host(host),
            "http" => self.local.as_deref().is_some_and(|local| {
                parsed
                    .port()
                    .is_some_and(|port| local == format!("{host}:{port}"))
            }),
            _ => false,
        };
        if allowed { Ok(parsed) } else { Err(refused()) }
    }
}

fn is_twilio_api_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    matches!(labels.as_slice(), ["api", middle @ .., "twilio", "com"] if middle.len() <= 2 && middle.iter().all(label_ok))
}

/// Twilio API credentials for Basic auth: an Account SID and auth token, or an API key SID
/// and secret.
#[derive(Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Starts the download of `url` (already with its `.wav` / `.mp3` suffix) from byte
/// `offset` (a `Range` request past 0; [`from_offset`] reads either answer); the body
/// streams.
pub async fn fetch(
    client: &reqwest::Client,
    hosts: &MediaHosts,
    url: &str,
    auth: &BasicAuth,
    offset: u64,
) -> Result<reqwest::Response, FetchError> {
    let url = hosts.check(url)?;
    let mut request = client
        .get(url)
        .basic_auth(&auth.username, Some(&auth.password));
    if offset > 0 {
        request = request.header("range", format!("bytes={offset}-"));
    }
    // Say which: refused, DNS, TLS or a timeout need different fixes.
    let response = request
        .send()
        .await
        .map_err(|e| FetchError::Transient(crate::error_chain(&e)))?;
    let status = response.status().as_u16();
    match status {
        200 | 206 => Ok(response),
        404 => Err(FetchError::NotReady),
        429 => Err(FetchError::RateLimited(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after),
        )),
        401 | 403 => Err(FetchError::Credentials(status)),
        // The client follows redirects to allowed hosts only; one it stopped at is refused.
        300..=399 => Err(FetchError::RedirectRefused(
            response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)")
                .chars()
                .take(200)
                .collect(),
        )),
        500..=599 => Err(FetchError::Transient(format!("HTTP {status}"))),
        other => Err(FetchError::Unexpected(other)),
    }
}

/// The longest `Retry-After` taken as given: SQS can hide a message for at most 12 hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(12 * 3600);

/// A `Retry-After` value (delta-seconds, or an HTTP-date, RFC 9110 §10.2.3), clamped to
/// [`MAX_RETRY_AFTER`]: a huge or hostile value can neither overflow a delay nor park a
/// message for days.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs())),
        Err(_) => {
            let at =
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
                    .ok()?;
            let left = at - time::OffsetDateTime::now_utc();
            Duration::try_from(left).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Where and how an object is written.
#[derive(Debug, Clone)]
pub struct ArchiveTarget {
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    /// SSE-KMS with this key; `None` uses the bucket's default encryption.
    pub kms_key_id: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
    /// SHA-256 of the whole object, hex.
    pub sha256: String,
    pub parts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the media failed after {bytes} bytes: {reason}")]
    Source { bytes: u64, reason: String },
    #[error("S3 {operation} failed: {reason}")]
    S3 {
        operation: &'static str,
        reason: String,
    },
}

fn s3_error<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> ArchiveError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| ArchiveError::S3 {
        operation,
        reason: crate::aws::error_summary(&e),
    }
}

/// Streams `body` into `target` as a multipart upload, aborting it on any failure.
pub async fn archive<S, E>(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    body: S,
) -> Result<Archived, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    match archive_resumable(s3, target, body, None, None).await? {
        ArchiveOutcome::Done(archived) => Ok(archived),
        ArchiveOutcome::Paused(_) => unreachable!("never paused without a deadline"),
    }
}

/// An upload cut short to be finished by a later invocation: the parts S3 holds and the
/// whole object's hash over them, so the next run fetches the media from `bytes` on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadProgress {
    pub upload_id: String,
    /// Bytes in the parts so far.
    pub bytes: u64,
    pub parts: Vec<PartDone>,
    /// SHA-256's running state over those bytes (`sha2`'s serialized state, base64).
    pub hash_state: String,
}

/// A part S3 has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartDone {
    pub number: i32,
    pub etag: Option<String>,
    /// The part's SHA-256, base64, as S3 checked it.
    pub sha256: String,
}

/// What an archive run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveOutcome {
    Done(Archived),
    /// The deadline came before the end: the upload stays open for the next run.
    Paused(UploadProgress),
}

/// The whole object's SHA-256, which must survive between invocations: sha2 0.11's hashers
/// serialize their state (`SerializableState`), so a resumed upload hashes on from where
/// the last one stopped instead of reading back what S3 already holds.
struct WholeHash(sha2_resumable::Sha256);

impl WholeHash {
    fn new() -> Self {
        Self(sha2_resumable::Sha256::default())
    }

    fn restore(state: &str) -> Result<Self, String> {
        use sha2_resumable::digest::common::hazmat::SerializableState;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(state)
            .map_err(|e| e.to_string())?;
        let state = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "a hash state of the wrong length".to_owned())?;
        sha2_resumable::Sha256::deserialize(state)
            .map(Self)
            .map_err(|_| "an unreadable hash state".to_owned())
    }

    fn save(&self) -> String {
        use sha2_resumable::digest::common::hazmat::SerializableState;
        base64::engine::general_purpose::STANDARD.encode(self.0.serialize())
    }

    fn update(&mut self, bytes: &[u8]) {
        sha2_resumable::Digest::update(&mut self.0, bytes);
    }

    fn finish(self) -> String {
        hex::encode(sha2_resumable::Digest::finalize(self.0))
    }
}

/// Streams `body` into `target`; with `resume`, continues that multipart upload (`body` then
/// starts at `resume.bytes`). A new recording that ends within its first part is one
/// `PutObject` (one PUT-class request where a multipart upload takes three). With
/// `pause_at`, stops at a part boundary when the next part would not be done by then,
/// leaving the upload open ([`ArchiveOutcome::Paused`]); any failure aborts the upload, so
/// no partial object is ever visible.
pub async fn archive_resumable<S, E>(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    mut body: S,
    resume: Option<UploadProgress>,
    pause_at: Option<std::time::Instant>,
) -> Result<ArchiveOutcome, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let (progress, hash, first) = match resume {
        Some(progress) => {
            let hash =
                WholeHash::restore(&progress.hash_state).map_err(|reason| ArchiveError::S3 {
                    operation: "resume",
                    reason,
                })?;
            (progress, hash, BytesMut::new())
        }
        None => {
            let mut first = BytesMut::with_capacity(PART_SIZE);
            if !fill(&mut body, &mut first, 0).await? {
                return put_whole(s3, target, first.freeze())
                    .await
                    .map(ArchiveOutcome::Done);
            }
            let progress = create_upload(s3, target).await?;
            (progress, WholeHash::new(), first)
        }
    };
    let upload_id = progress.upload_id.clone();
    let result = upload_parts(s3, target, progress, hash, first, body, pause_at).await;
    if result.is_err() {
        // Nothing was completed, so nothing is visible; abort frees the parts.
        let _ = s3
            .abort_multipart_upload()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

/// Reads `body` into `buffer` until it holds a part or the body ends; `Ok(false)` when it
/// ended. `archived` is what earlier parts hold, for the error's byte count.
async fn fill<S, E>(
    body: &mut S,
    buffer: &mut BytesMut,
    archived: u64,
) -> Result<bool, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    while buffer.len() < PART_SIZE {
        match body.next().await {
            Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(ArchiveError::Source {
                    bytes: archived + buffer.len() as u64,
                    reason: crate::error_chain(&e),
                });
            }
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// The whole recording in one `PutObject`, with its SHA-256 for S3 to check.
async fn put_whole(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    object: Bytes,
) -> Result<Archived, ArchiveError> {
    let digest = Sha256::digest(&object);
    let bytes = object.len() as u64;
    let mut put = s3
        .put_object()
        .bucket(&target.bucket)
        .key(&target.key)
        .content_type(&target.content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .set_metadata(Some(target.metadata.clone()))
        .body(ByteStream::from(object));
    if let Some(key_id) = &target.kms_key_id {
        put = put
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id);
    }
    put.send().await.map_err(s3_error("PutObject"))?;
    Ok(Archived {
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        bytes,
        sha256: hex::encode(digest),
        parts: 1,
    })
}

async fn create_upload(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
) -> Result<UploadProgress, ArchiveError> {
    let mut create = s3
        .create_multipart_upload()
        .bucket(&target.bucket)
        .key(&target.key)
        .content_type(&target.content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .set_metadata(Some(target.metadata.clone()));
    if let Some(key_id) = &target.kms_key_id {
        create = create
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id);
    }
    let upload_id = create
        .send()
        .await
        .map_err(s3_error("CreateMultipartUpload"))?
        .upload_id
        .ok_or_else(|| ArchiveError::S3 {
            operation: "CreateMultipartUpload",
            reason: "no upload id".into(),
        })?;
    Ok(UploadProgress {
        upload_id,
        bytes: 0,
        parts: Vec::new(),
        hash_state: String::new(),
    })
}

/// How long one part takes at worst (8 MiB to S3), to stop before the deadline with room
/// to save the progress.
pub const PART_BUDGET: Duration = Duration::from_secs(4);

async fn upload_parts<S, E>(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    mut progress: UploadProgress,
    mut whole: WholeHash,
    mut buffer: BytesMut,
    mut body: S,
    pause_at: Option<std::time::Instant>,
) -> Result<ArchiveOutcome, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    // Full parts go as soon as they are full; the rest (or an empty object) at the end.
    let mut ended = false;
    loop {
        if !ended {
            ended = !fill(&mut body, &mut buffer, progress.bytes).await?;
        }
        if buffer.is_empty() && !progress.parts.is_empty() {
            break;
        }
        if pause_at.is_some_and(|at| std::time::Instant::now() + PART_BUDGET >= at) {
            // What is buffered is fetched again by the next run, from `bytes`.
            progress.hash_state = whole.save();
            return Ok(ArchiveOutcome::Paused(progress));
        }
        let part = buffer.split_to(buffer.len().min(PART_SIZE)).freeze();
        whole.update(&part);
        let number = progress.parts.len() as i32 + 1;
        progress.bytes += part.len() as u64;
        progress
            .parts
            .push(upload_part(s3, target, &progress.upload_id, number, part).await?);
        if ended && buffer.is_empty() {
            break;
        }
    }
    let count = progress.parts.len();
    let parts = progress
        .parts
        .iter()
        .map(|p| {
            CompletedPart::builder()
                .part_number(p.number)
                .set_e_tag(p.etag.clone())
                .checksum_sha256(&p.sha256)
                .build()
        })
        .collect();
    s3.complete_multipart_upload()
        .bucket(&target.bucket)
        .key(&target.key)
        .upload_id(&progress.upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(s3_error("CompleteMultipartUpload"))?;
    Ok(ArchiveOutcome::Done(Archived {
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        bytes: progress.bytes,
        sha256: whole.finish(),
        parts: count,
    }))
}

async fn upload_part(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    upload_id: &str,
    number: i32,
    part: Bytes,
) -> Result<PartDone, ArchiveError> {
    let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&part));
    let output = s3
        .upload_part()
        .bucket(&target.bucket)
        .key(&target.key)
        .upload_id(upload_id)
        .part_number(number)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(&checksum)
        .body(ByteStream::from(part))
        .send()
        .await
        .map_err(s3_error("UploadPart"))?;
    Ok(PartDone {
        number,
        etag: output.e_tag,
        sha256: checksum,
    })
}

/// A media stream from `offset` on: `response` is the answer to a `Range: bytes=offset-`
/// request, a 206 that starts there or a 200 from the start, whose first `offset` bytes are
/// skipped (the media is immutable, so they are the bytes already archived).
pub fn from_offset(
    response: reqwest::Response,
    offset: u64,
) -> Result<impl Stream<Item = Result<Bytes, reqwest::Error>> + Unpin, FetchError> {
    let skip = match response.status().as_u16() {
        206 => {
            let starts_at = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if starts_at != Some(offset) {
                return Err(FetchError::Transient(format!(
                    "asked for bytes from {offset}, got {starts_at:?}"
                )));
            }
            0
        }
        _ => offset,
    };
    let mut left = skip;
    Ok(Box::pin(response.bytes_stream().filter_map(move |chunk| {
        let chunk = match chunk {
            Ok(chunk) if left >= chunk.len() as u64 => {
                left -= chunk.len() as u64;
                None
            }
            Ok(mut chunk) => {
                let rest = chunk.split_off(left as usize);
                left = 0;
                Some(Ok(rest))
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(chunk)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_twilio_api_hosts_over_https_are_fetched() {
        let hosts = MediaHosts::twilio();
        for ok in [
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.wav",
            "https://api.ie1.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.wav",
            "https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.mp3",
        ] {
            assert!(hosts.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://api.twilio.com/x.wav",
            "https://api.twilio.com:8443/x.wav",
            "https://evil.example/api.twilio.com/x.wav",
            "https://api.twilio.com.evil.example/x.wav",
            "https://user:pw@api.twilio.com/x.wav",
            "https://media.twilio.com/x.wav",
            "https://api.a.b.c.twilio.com/x.wav",
            "https://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9000/x.wav",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(
                matches!(hosts.check(refused), Err(FetchError::Refused(_))),
                "{refused}"
            );
        }
        let local = MediaHosts::with_local("127.0.0.1:9000");
        assert!(local.check("http://127.0.0.1:9000/x.wav").is_ok());
        assert!(local.check("http://127.0.0.1:9001/x.wav").is_err());
        assert!(local.check("http://localhost:9000/x.wav").is_err());
    }

    #[test]
    fn only_the_callbacks_own_recording_resource_is_fetched() {
        let hosts = MediaHosts::twilio();
        let (ac, re) = (
            "AC0123456789abcdef0123456789abcdef",
            "RE0123456789abcdef0123456789abcdef",
        );
        let own = format!("https://api.twilio.com/2010-04-01/Accounts/{ac}/Recordings/{re}");
        assert_eq!(
            hosts.recording_resource(&own, ac, re).as_deref(),
            Ok(own.as_str())
        );
        let edge =
            format!("https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/{ac}/Recordings/{re}");
        assert!(hosts.recording_resource(&edge, ac, re).is_ok());
        for refused in [
            // Another resource of the account: a DELETE there releases a number.
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef"
            ),
            format!("https://api.twilio.com/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers/PN1?x="),
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{ac}/Recordings/../IncomingPhoneNumbers/PN1"
            ),
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{ac}/Recordings/%2e%2e/IncomingPhoneNumbers/PN1"
            ),
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{ac}/Recordings/RE99999999999999999999999999999999"
            ),
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/AC99999999999999999999999999999999/Recordings/{re}"
            ),
            format!("{own}?x="),
            format!("{own}.wav"),
            format!("{own}/"),
            format!("{own}#f"),
            format!("https://API.twilio.com/2010-04-01/Accounts/{ac}/Recordings/{re}"),
            format!("https://evil.example/2010-04-01/Accounts/{ac}/Recordings/{re}"),
        ] {
            assert!(
                matches!(
                    hosts.recording_resource(&refused, ac, re),
                    Err(FetchError::Refused(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn retry_after_is_clamped_and_never_overflows() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("99999999999999999999"), None, "not a u64");
        assert_eq!(retry_after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after("soon"), None);
        // What the worker then does with it must not overflow either.
        let wait = retry_after("18446744073709551615").unwrap();
        let _ = wait.mul_f64(1.2);
    }

    #[test]
    fn credentials_never_print() {
        let auth = BasicAuth {
            username: "AC1".into(),
            password: "secret-token".into(),
        };
        assert!(!format!("{auth:?}").contains("secret-token"));
    }
}
