//! Configuration from the environment: the names here are the ones `infra/template.yaml`
//! sets and the local stack exports; a test checks that they agree.

use std::time::Duration;

/// The URL prefix Twilio was given, before the path API Gateway reports: signatures are
/// computed over `PUBLIC_BASE_URL + rawPath + ?rawQuery`, never over the request line,
/// which API Gateway, a custom domain or the local emulator rewrite.
pub const PUBLIC_BASE_URL: &str = "VOICEHOOKS_PUBLIC_BASE_URL";
pub const STATUS_QUEUE_URL: &str = "VOICEHOOKS_STATUS_QUEUE_URL";
pub const CALLS_TABLE: &str = "VOICEHOOKS_CALLS_TABLE";
pub const TWILIO_SECRET_ID: &str = "VOICEHOOKS_TWILIO_SECRET_ID";
/// How long the voice webhook waits for its `call.started` enqueue before answering anyway
/// (milliseconds, default 1000).
pub const ENQUEUE_DEADLINE_MS: &str = "VOICEHOOKS_ENQUEUE_DEADLINE_MS";
pub const RECORDING_QUEUE_URL: &str = "VOICEHOOKS_RECORDING_QUEUE_URL";
pub const TRANSCRIPT_QUEUE_URL: &str = "VOICEHOOKS_TRANSCRIPT_QUEUE_URL";
/// Where a worker puts a message that no retry can fix (bad credentials, a refused URL),
/// with the reason, instead of failing it hot until maxReceiveCount.
pub const DEAD_LETTER_QUEUE_URL: &str = "VOICEHOOKS_DEAD_LETTER_QUEUE_URL";
pub const RECORDINGS_BUCKET: &str = "VOICEHOOKS_RECORDINGS_BUCKET";
/// The KMS key objects are encrypted with (SSE-KMS); the bucket's default when unset.
pub const RECORDINGS_KMS_KEY_ID: &str = "VOICEHOOKS_RECORDINGS_KMS_KEY_ID";
/// `wav` (default) or `mp3`.
pub const MEDIA_FORMAT: &str = "VOICEHOOKS_MEDIA_FORMAT";
/// `1` or `2`: asks Twilio for mono or dual-channel media (`RequestedChannels`); unset: as
/// recorded.
pub const MEDIA_CHANNELS: &str = "VOICEHOOKS_MEDIA_CHANNELS";
/// `true`: delete Twilio's copy once ours is verified in S3 (default false).
pub const DELETE_FROM_TWILIO: &str = "VOICEHOOKS_DELETE_FROM_TWILIO";
/// `true` (default): start an Amazon Transcribe job for each archived recording.
pub const TRANSCRIBE: &str = "VOICEHOOKS_TRANSCRIBE";
pub const TRANSCRIBE_LANGUAGE: &str = "VOICEHOOKS_TRANSCRIBE_LANGUAGE";
/// `true`: Transcribe redacts PII from the transcript (default false).
pub const TRANSCRIBE_REDACT_PII: &str = "VOICEHOOKS_TRANSCRIBE_REDACT_PII";
/// `host:port` of the local Twilio stand-in, allowed for media over plain HTTP. Never set on
/// AWS: only Twilio's API hosts are allowed there.
pub const LOCAL_MEDIA_HOST: &str = "VOICEHOOKS_LOCAL_MEDIA_HOST";
/// Seconds a retried worker message waits at least; doubled per receive, jittered, capped at
/// 15 minutes (default 15).
pub const RETRY_BASE_SECS: &str = "VOICEHOOKS_RETRY_BASE_SECS";
/// The queue's maxReceiveCount (the template passes its `MaxReceiveCount`). On that last
/// receive a worker that still fails a message dead-letters it itself, with the reason, so
/// `voicectl dlq peek` can say why; SQS's own move would carry no reason.
pub const MAX_RECEIVE_COUNT: &str = "VOICEHOOKS_MAX_RECEIVE_COUNT";
/// Seconds an auth token is cached before Secrets Manager is asked again (default 300).
pub const SECRET_TTL_SECS: &str = "VOICEHOOKS_SECRET_TTL_SECS";
/// Seconds past the TTL the last good token is still used while Secrets Manager cannot be
/// read (default 3600, `secrets::MAX_STALENESS`).
pub const SECRET_MAX_STALE_SECS: &str = "VOICEHOOKS_SECRET_MAX_STALE_SECS";
/// The bucket accepted events are spilled to when SQS does not take them in time
/// (`voicehooks::spill`); the spill drainer reads it.
pub const SPILL_BUCKET: &str = "VOICEHOOKS_SPILL_BUCKET";
/// Seconds back the scheduled reconciler looks at Twilio's calls and recordings (default
/// 7200; the `ReconcileWindowSeconds` parameter).
pub const RECONCILE_WINDOW_SECS: &str = "VOICEHOOKS_RECONCILE_WINDOW_SECS";
/// Local stack only: the stand-in's REST API base (`http://127.0.0.1:…`). Never set on AWS,
/// where the reconciler talks to `https://api.twilio.com` only.
pub const LOCAL_TWILIO_API: &str = "VOICEHOOKS_LOCAL_TWILIO_API";

/// Which of the authorizer's JWT claims names a softphone's identity (default `sub`).
pub const SOFTPHONE_IDENTITY_CLAIM: &str = "VOICEHOOKS_SOFTPHONE_IDENTITY_CLAIM";
/// Seconds a softphone's Access Token lives (default 600, at most 86400: Twilio's limit).
pub const SOFTPHONE_TTL_SECS: &str = "VOICEHOOKS_SOFTPHONE_TTL_SECS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set; see docs/OPERATIONS.md, Configuration")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// How a route checks that a request comes from Twilio: the URL prefix it was given and the
/// secret holding the auth token.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub public_base_url: String,
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub secret_max_staleness: Duration,
}

impl VerifierConfig {
    /// What the voice fallback needs, and every webhook first.
    pub fn from_env() -> Result<Self, ConfigError> {
        let public_base_url = required(PUBLIC_BASE_URL)?;
        if !(public_base_url.starts_with("https://") || public_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: PUBLIC_BASE_URL,
                why: "must start with https:// or http://".into(),
            });
        }
        Ok(Self {
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            secret_id: required(TWILIO_SECRET_ID)?,
            secret_ttl: secret_ttl()?,
            secret_max_staleness: secret_max_staleness()?,
        })
    }
}

/// What a webhook function needs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub verifier: VerifierConfig,
    pub queue_url: String,
    pub spill_bucket: String,
}

impl WebhookConfig {
    /// `queue_var` names the queue this webhook feeds.
    pub fn from_env(queue_var: &'static str) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: VerifierConfig::from_env()?,
            queue_url: required(queue_var)?,
            spill_bucket: required(SPILL_BUCKET)?,
        })
    }
}

/// What the spill drainer needs: the spill, and the queue of each pipeline.
#[derive(Debug, Clone)]
pub struct SpillDrainerConfig {
    pub spill_bucket: String,
    pub status_queue_url: String,
    pub recording_queue_url: String,
    pub transcript_queue_url: String,
    /// How requests spilled unverified are checked: as the webhooks check them.
    pub verifier: VerifierConfig,
}

impl SpillDrainerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: VerifierConfig::from_env()?,
            spill_bucket: required(SPILL_BUCKET)?,
            status_queue_url: required(STATUS_QUEUE_URL)?,
            recording_queue_url: required(RECORDING_QUEUE_URL)?,
            transcript_queue_url: required(TRANSCRIPT_QUEUE_URL)?,
        })
    }
}

/// The queue a worker consumes and how it settles what it cannot apply.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// A retried message waits at least this, doubled per receive (see [`RETRY_BASE_SECS`]).
    pub retry_base: Duration,
    /// The queue's maxReceiveCount (see [`MAX_RECEIVE_COUNT`]).
    pub max_receives: u32,
}

impl QueueSettings {
    /// `queue_var` names the queue the worker consumes.
    pub fn from_env(queue_var: &'static str) -> Result<Self, ConfigError> {
        let max_receives = required(MAX_RECEIVE_COUNT)?;
        Ok(Self {
            queue_url: required(queue_var)?,
            dead_letter_queue_url: required(DEAD_LETTER_QUEUE_URL)?,
            retry_base: retry_base()?,
            max_receives: max_receives
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::Invalid {
                    name: MAX_RECEIVE_COUNT,
                    why: format!("{max_receives:?} is not a whole number of at least 1"),
                })?,
        })
    }
}

/// What the status worker needs.
#[derive(Debug, Clone)]
pub struct StatusWorkerConfig {
    pub calls_table: String,
    pub queue: QueueSettings,
}

impl StatusWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            calls_table: required(CALLS_TABLE)?,
            queue: QueueSettings::from_env(STATUS_QUEUE_URL)?,
        })
    }
}

/// The media file Twilio is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    Wav,
    Mp3,
}

impl MediaFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/x-wav",
            Self::Mp3 => "audio/mpeg",
        }
    }
}

/// What the recording worker needs.
#[derive(Debug, Clone)]
pub struct RecordingWorkerConfig {
    pub calls_table: String,
    pub bucket: String,
    pub kms_key_id: Option<String>,
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub queue: QueueSettings,
    pub format: MediaFormat,
    pub channels: Option<u32>,
    pub delete_from_twilio: bool,
    pub transcribe: bool,
    pub language: String,
    pub redact_pii: bool,
    pub local_media_host: Option<String>,
}

impl RecordingWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let format = match optional(MEDIA_FORMAT).as_deref() {
            None | Some("wav") => MediaFormat::Wav,
            Some("mp3") => MediaFormat::Mp3,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: MEDIA_FORMAT,
                    why: format!("{other:?} is neither wav nor mp3"),
                });
            }
        };
        let channels = match optional(MEDIA_CHANNELS).as_deref() {
            None => None,
            Some("1") => Some(1),
            Some("2") => Some(2),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: MEDIA_CHANNELS,
                    why: format!("{other:?} is neither 1 nor 2"),
                });
            }
        };
        Ok(Self {
            calls_table: required(CALLS_TABLE)?,
            bucket: required(RECORDINGS_BUCKET)?,
            kms_key_id: optional(RECORDINGS_KMS_KEY_ID),
            secret_id: required(TWILIO_SECRET_ID)?,
            secret_ttl: secret_ttl()?,
            queue: QueueSettings::from_env(RECORDING_QUEUE_URL)?,
            format,
            channels,
            delete_from_twilio: flag(DELETE_FROM_TWILIO, false)?,
            transcribe: flag(TRANSCRIBE, true)?,
            language: optional(TRANSCRIBE_LANGUAGE).unwrap_or_else(|| "en-US".into()),
            redact_pii: flag(TRANSCRIBE_REDACT_PII, false)?,
            local_media_host: optional(LOCAL_MEDIA_HOST),
        })
    }
}

/// What the transcript worker needs.
#[derive(Debug, Clone)]
pub struct TranscriptWorkerConfig {
    pub calls_table: String,
    pub bucket: String,
    pub queue: QueueSettings,
}

impl TranscriptWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            calls_table: required(CALLS_TABLE)?,
            bucket: required(RECORDINGS_BUCKET)?,
            queue: QueueSettings::from_env(TRANSCRIPT_QUEUE_URL)?,
        })
    }
}

/// What the scheduled reconciler needs.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub calls_table: String,
    pub status_queue_url: String,
    pub recording_queue_url: String,
    pub window: Duration,
    pub api_base: String,
}

impl ReconcilerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            secret_id: required(TWILIO_SECRET_ID)?,
            secret_ttl: secret_ttl()?,
            calls_table: required(CALLS_TABLE)?,
            status_queue_url: required(STATUS_QUEUE_URL)?,
            recording_queue_url: required(RECORDING_QUEUE_URL)?,
            window: duration_var(RECONCILE_WINDOW_SECS, 7200, Duration::from_secs, "seconds")?,
            api_base: optional(LOCAL_TWILIO_API)
                .unwrap_or_else(|| crate::twilio::rest::API_BASE.to_owned()),
        })
    }
}

/// What `softphone-token` needs: the secret with the API key, and how it mints.
#[derive(Debug, Clone)]
pub struct SoftphoneTokenConfig {
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub secret_max_staleness: Duration,
    pub settings: crate::softphone::TokenSettings,
}

impl SoftphoneTokenConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let ttl = duration_var(
            SOFTPHONE_TTL_SECS,
            crate::softphone::DEFAULT_TTL.as_secs(),
            Duration::from_secs,
            "seconds",
        )?;
        if ttl.is_zero() || ttl > crate::softphone::MAX_TTL {
            return Err(ConfigError::Invalid {
                name: SOFTPHONE_TTL_SECS,
                why: format!(
                    "{} s is outside 1 s to 24 h, the lifetimes Twilio accepts",
                    ttl.as_secs()
                ),
            });
        }
        Ok(Self {
            secret_id: required(TWILIO_SECRET_ID)?,
            secret_ttl: secret_ttl()?,
            secret_max_staleness: secret_max_staleness()?,
            settings: crate::softphone::TokenSettings {
                identity_claim: optional(SOFTPHONE_IDENTITY_CLAIM).unwrap_or_else(|| "sub".into()),
                ttl,
            },
        })
    }
}

/// The voice webhook's wait for its `call.started` enqueue.
pub fn enqueue_deadline() -> Result<Duration, ConfigError> {
    duration_var(
        ENQUEUE_DEADLINE_MS,
        1000,
        Duration::from_millis,
        "milliseconds",
    )
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    optional(name).ok_or(ConfigError::Missing(name))
}

fn optional(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(name).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            why: format!("{other:?} is neither true nor false"),
        }),
    }
}

fn retry_base() -> Result<Duration, ConfigError> {
    duration_var(RETRY_BASE_SECS, 15, Duration::from_secs, "seconds")
}

fn secret_ttl() -> Result<Duration, ConfigError> {
    duration_var(SECRET_TTL_SECS, 300, Duration::from_secs, "seconds")
}

fn secret_max_staleness() -> Result<Duration, ConfigError> {
    duration_var(
        SECRET_MAX_STALE_SECS,
        crate::secrets::MAX_STALENESS.as_secs(),
        Duration::from_secs,
        "seconds",
    )
}

/// A whole number of `unit`s from the environment, or the default when unset.
fn duration_var(
    name: &'static str,
    default: u64,
    unit: fn(u64) -> Duration,
    unit_name: &str,
) -> Result<Duration, ConfigError> {
    let Ok(value) = std::env::var(name) else {
        return Ok(unit(default));
    };
    value.parse().map(unit).map_err(|_| ConfigError::Invalid {
        name,
        why: format!("{value:?} is not whole {unit_name}"),
    })
}

/// The documented local stack: fixed names and credentials that are not secret, used by
/// `make demo`, the tests, the Twilio stand-in and the signed requests under `events/`.
pub mod local {
    /// The stack name the local bootstrap derives resource names from, as CloudFormation
    /// would for a stack of this name.
    pub const STACK_NAME: &str = "voicehooks-local";
    /// The URL prefix the local "Twilio" is given. Requests are delivered to cargo-lambda's
    /// function URLs, as a custom domain or proxy would forward them, but signed for this.
    pub const PUBLIC_BASE_URL: &str = "https://hooks.voicehooks.test";
    pub const ACCOUNT_SID: &str = "AC10ca1000000000000000000000000001";
    /// Not a secret: the local stand-in's auth token, stored in the local Secrets Manager.
    pub const AUTH_TOKEN: &str = "local-auth-token-not-a-secret-00";
    /// The local account's API key (REST calls and softphone tokens), and the TwiML App
    /// softphones dial out through. Not secrets either.
    pub const API_KEY_SID: &str = "SK10ca1000000000000000000000000001";
    pub const API_KEY_SECRET: &str = "local-api-key-secret-not-a-secret";
    pub const TWIML_APP_SID: &str = "AP10ca1000000000000000000000000001";
}
