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
/// Seconds an auth token is cached before Secrets Manager is asked again (default 300).
pub const SECRET_TTL_SECS: &str = "VOICEHOOKS_SECRET_TTL_SECS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set; see the README's configuration section")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// What a webhook function needs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub public_base_url: String,
    pub queue_url: String,
    pub secret_id: String,
    pub secret_ttl: Duration,
}

impl WebhookConfig {
    /// `queue_var` names the queue this webhook feeds.
    pub fn from_env(queue_var: &'static str) -> Result<Self, ConfigError> {
        let public_base_url = required(PUBLIC_BASE_URL)?;
        if !(public_base_url.starts_with("https://") || public_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: PUBLIC_BASE_URL,
                why: "must start with https:// or http://".into(),
            });
        }
        Ok(Self {
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            queue_url: required(queue_var)?,
            secret_id: required(TWILIO_SECRET_ID)?,
            secret_ttl: secret_ttl()?,
        })
    }
}

/// What the status worker needs.
#[derive(Debug, Clone)]
pub struct StatusWorkerConfig {
    pub calls_table: String,
}

impl StatusWorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            calls_table: required(CALLS_TABLE)?,
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
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn secret_ttl() -> Result<Duration, ConfigError> {
    duration_var(SECRET_TTL_SECS, 300, Duration::from_secs, "seconds")
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
}
