//! Recording media: fetched from Twilio's API hosts only, streamed into S3.
//!
//! The fetch is refused unless the URL is on an allow-listed Twilio API host (no SSRF through
//! a forged `RecordingUrl`), and its failures are sorted by what the worker should do about
//! them. The upload is an S3 multipart upload with a SHA-256 checksum per part, fed as the
//! bytes arrive, so memory stays at one part whatever the recording's size; on any failure
//! the upload is aborted and no object, partial or whole, becomes visible.

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

/// Starts the download of `url` (already with its `.wav` / `.mp3` suffix); the body
/// streams.
pub async fn fetch(
    client: &reqwest::Client,
    hosts: &MediaHosts,
    url: &str,
    auth: &BasicAuth,
) -> Result<reqwest::Response, FetchError> {
    let url = hosts.check(url)?;
    let response = client
        .get(url)
        .basic_auth(&auth.username, Some(&auth.password))
        .send()
        .await
        .map_err(|e| FetchError::Transient(e.to_string()))?;
    let status = response.status().as_u16();
    match status {
        200 => Ok(response),
        404 => Err(FetchError::NotReady),
        429 => Err(FetchError::RateLimited(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs),
        )),
        401 | 403 => Err(FetchError::Credentials(status)),
        500..=599 => Err(FetchError::Transient(format!("HTTP {status}"))),
        other => Err(FetchError::Unexpected(other)),
    }
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
    E: std::fmt::Display,
{
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
    let result = upload_parts(s3, target, &upload_id, body).await;
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

async fn upload_parts<S, E>(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    upload_id: &str,
    mut body: S,
) -> Result<Archived, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut whole = Sha256::new();
    let mut bytes = 0u64;
    let mut buffer = BytesMut::with_capacity(PART_SIZE);
    let mut parts = Vec::new();
    loop {
        let chunk = body
            .next()
            .await
            .transpose()
            .map_err(|e| ArchiveError::Source {
                bytes,
                reason: e.to_string(),
            })?;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            whole.update(&chunk);
            bytes += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
        }
        // Full parts go as soon as they are full; the rest (or an empty object) at the end.
        while buffer.len() >= PART_SIZE || (done && (!buffer.is_empty() || parts.is_empty())) {
            let take = buffer.len().min(PART_SIZE);
            let part = buffer.split_to(take).freeze();
            parts.push(upload_part(s3, target, upload_id, parts.len() as i32 + 1, part).await?);
            if buffer.is_empty() {
                break;
            }
        }
        if done {
            break;
        }
    }
    let count = parts.len();
    s3.complete_multipart_upload()
        .bucket(&target.bucket)
        .key(&target.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(s3_error("CompleteMultipartUpload"))?;
    Ok(Archived {
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        bytes,
        sha256: hex::encode(whole.finalize()),
        parts: count,
    })
}

async fn upload_part(
    s3: &aws_sdk_s3::Client,
    target: &ArchiveTarget,
    upload_id: &str,
    number: i32,
    part: Bytes,
) -> Result<CompletedPart, ArchiveError> {
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
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(output.e_tag)
        .checksum_sha256(checksum)
        .build())
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
    fn credentials_never_print() {
        let auth = BasicAuth {
            username: "AC1".into(),
            password: "secret-token".into(),
        };
        assert!(!format!("{auth:?}").contains("secret-token"));
    }
}
