//! Twilio credentials from Secrets Manager, cached across invocations.
//!
//! The secret is JSON: `{"account_sid": "AC…", "auth_token": "…"}`, optionally with
//! `"api_key_sid": "SK…", "api_key_secret": "…"`, which media downloads then use instead of
//! the auth token (Twilio's recommended way to call its REST API). A rotation keeps the old
//! token as `AWSPREVIOUS`, so webhooks signed just before the rotation still validate. The
//! happy path costs one Secrets Manager read per cold start and per TTL; `AWSPREVIOUS` is
//! read only when a signature fails with the current token.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Twilio account credentials. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
    #[serde(default)]
    pub api_key_sid: Option<String>,
    #[serde(default)]
    pub api_key_secret: Option<String>,
}

impl TwilioCredentials {
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            api_key_sid: None,
            api_key_secret: None,
        }
    }

    /// Basic auth for Twilio's REST API: the API key when there is one, else the account.
    pub fn basic_auth(&self) -> crate::media::BasicAuth {
        let (username, password) = match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(secret)) => (sid, secret),
            _ => (&self.account_sid, &self.auth_token),
        };
        crate::media::BasicAuth {
            username: username.clone(),
            password: password.clone(),
        }
    }
}

impl fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("api_key_sid", &self.api_key_sid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager could not be read ({0}); check the function's role and the secret id")]
    Unavailable(String),
    #[error("secret {0} is not JSON with account_sid and auth_token")]
    BadShape(String),
}

/// Where webhook functions get the auth tokens to check signatures with.
pub trait AuthTokens: Send + Sync {
    /// The current credentials (cached).
    fn current(&self) -> impl Future<Output = Result<Arc<TwilioCredentials>, SecretsError>> + Send;
    /// The credentials before the last rotation, if there are any (cached).
    fn previous(
        &self,
    ) -> impl Future<Output = Result<Option<Arc<TwilioCredentials>>, SecretsError>> + Send;
    /// Re-reads the current credentials if the cached ones are old enough that a rotation may
    /// have happened since; returns them only when they changed.
    fn refresh_current(
        &self,
    ) -> impl Future<Output = Result<Option<Arc<TwilioCredentials>>, SecretsError>> + Send;
}

/// Fixed credentials, for tests of the webhook logic and for `voicectl`.
pub struct StaticTokens {
    pub current: Arc<TwilioCredentials>,
    pub previous: Option<Arc<TwilioCredentials>>,
}

impl AuthTokens for StaticTokens {
    async fn current(&self) -> Result<Arc<TwilioCredentials>, SecretsError> {
        Ok(self.current.clone())
    }
    async fn previous(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        Ok(self.previous.clone())
    }
    async fn refresh_current(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        Ok(None)
    }
}

/// How soon after a read a failed signature may trigger another read of `AWSCURRENT`:
/// bounds what a flood of forged requests can cost in Secrets Manager calls.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

struct Cached<T> {
    value: T,
    read_at: Instant,
}

/// [`AuthTokens`] backed by Secrets Manager, with a TTL cache shared by all invocations of
/// one Lambda instance.
pub struct SecretsManagerTokens {
    client: Client,
    secret_id: String,
    ttl: Duration,
    min_refresh_interval: Duration,
    current: Mutex<Option<Cached<Arc<TwilioCredentials>>>>,
    previous: Mutex<Option<Cached<Option<Arc<TwilioCredentials>>>>>,
}

impl SecretsManagerTokens {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            ttl,
            min_refresh_interval: MIN_REFRESH_INTERVAL,
            current: Mutex::new(None),
            previous: Mutex::new(None),
        }
    }

    /// Overrides [`MIN_REFRESH_INTERVAL`].
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    async fn read(&self, stage: &str) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            // No version carries the stage (never rotated): not an error for AWSPREVIOUS.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                    && stage != "AWSCURRENT" =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(SecretsError::Unavailable(crate::aws::error_summary(&e)));
            }
        };
        let text = output
            .secret_string()
            .ok_or_else(|| SecretsError::BadShape(self.secret_id.clone()))?;
        let credentials: TwilioCredentials = serde_json::from_str(text)
            .map_err(|_| SecretsError::BadShape(self.secret_id.clone()))?;
        Ok(Some(Arc::new(credentials)))
    }

    async fn read_current(&self) -> Result<Arc<TwilioCredentials>, SecretsError> {
        self.read("AWSCURRENT").await?.ok_or_else(|| {
            SecretsError::Unavailable(format!("{} has no AWSCURRENT", self.secret_id))
        })
    }
}

impl AuthTokens for SecretsManagerTokens {
    async fn current(&self) -> Result<Arc<TwilioCredentials>, SecretsError> {
        let mut cache = self.current.lock().await;
        if let Some(cached) = cache.as_ref().filter(|c| c.read_at.elapsed() < self.ttl) {
            return Ok(cached.value.clone());
        }
        let value = self.read_current().await?;
        *cache = Some(Cached {
            value: value.clone(),
            read_at: Instant::now(),
        });
        Ok(value)
    }

    async fn previous(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        let mut cache = self.previous.lock().await;
        if let Some(cached) = cache.as_ref().filter(|c| c.read_at.elapsed() < self.ttl) {
            return Ok(cached.value.clone());
        }
        let value = self.read("AWSPREVIOUS").await?;
        *cache = Some(Cached {
            value: value.clone(),
            read_at: Instant::now(),
        });
        Ok(value)
    }

    async fn refresh_current(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        let mut cache = self.current.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.read_at.elapsed() < self.min_refresh_interval)
        {
            return Ok(None);
        }
        let fresh = self.read_current().await?;
        let changed = cache.as_ref().is_none_or(|c| c.value != fresh);
        *cache = Some(Cached {
            value: fresh.clone(),
            read_at: Instant::now(),
        });
        // The old current is now likely AWSPREVIOUS: forget the cached previous.
        if changed {
            *self.previous.lock().await = None;
        }
        Ok(changed.then_some(fresh))
    }
}
