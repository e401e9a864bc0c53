//! Twilio credentials from Secrets Manager, cached across invocations.
//!
//! The secret is JSON: `{"account_sid": "AC…", "auth_token": "…"}`, optionally with
//! `"api_key_sid": "SK…", "api_key_secret": "…"`, which media downloads then use instead of
//! the auth token (Twilio's recommended way to call its REST API) and which, with
//! `"twiml_app_sid": "AP…"`, sign softphones' Access Tokens, and
//! `"webhook_shared_keys": [{"sid": "webhooks_sharedkey_…", "secret": "…"}]` when webhooks are
//! signed with SharedKeys (HMAC-SHA256) instead of the auth token. A rotation keeps the old
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
    /// The TwiML App softphones' outgoing calls use (`AP…`): with the API key, what
    /// `softphone-token` mints Access Tokens from.
    #[serde(default)]
    pub twiml_app_sid: Option<String>,
    /// Twilio's SharedKeys for webhook signatures (HMAC-SHA256), when the account uses them:
    /// the current one and, during a rotation, the one before it.
    #[serde(default)]
    pub webhook_shared_keys: Vec<SharedKey>,
}

/// A SharedKey: its SID (named in `X-Twilio-Webhooks-Signature-Settings`) and its secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct SharedKey {
    pub sid: String,
    pub secret: String,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey")
            .field("sid", &self.sid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TwilioCredentials {
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            api_key_sid: None,
            api_key_secret: None,
            twiml_app_sid: None,
            webhook_shared_keys: Vec::new(),
        }
    }

    /// The SharedKeys a signature naming `sid` may be checked with: that key, or every key
    /// when the header names none.
    pub fn shared_keys<'a>(&'a self, sid: Option<&'a str>) -> impl Iterator<Item = &'a SharedKey> {
        self.webhook_shared_keys
            .iter()
            .filter(move |k| sid.is_none_or(|sid| k.sid == sid))
    }

    /// [`Self::shared_keys`]' secrets.
    pub fn shared_key_secrets<'a>(&'a self, sid: Option<&'a str>) -> impl Iterator<Item = &'a str> {
        self.shared_keys(sid).map(|k| k.secret.as_str())
    }

    /// Basic auth for Twilio's REST API: the API key when there is one, else the account.
    pub fn basic_auth(&self) -> crate::recording::media::BasicAuth {
        let (username, password) = match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(secret)) => (sid, secret),
            _ => (&self.account_sid, &self.auth_token),
        };
        crate::recording::media::BasicAuth {
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
            .field("twiml_app_sid", &self.twiml_app_sid)
            .field("webhook_shared_keys", &self.webhook_shared_keys)
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

/// How long past their TTL the last good tokens are still used while Secrets Manager cannot
/// be read (default of `VOICEHOOKS_SECRET_MAX_STALE_SECS`). An outage then costs no webhook;
/// past it, a token that may have been revoked meanwhile is no longer trusted and callbacks
/// answer 503. Every stale use is counted (`TokensServedStale`), so the alarm rings first.
pub const MAX_STALENESS: Duration = Duration::from_secs(3600);

/// After a failed read, how long the cached tokens are used before Secrets Manager is asked
/// again: during an outage one request in this interval pays for the attempt, not each.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// How long a request that has cached tokens to fall back on waits for a refresh. A cold
/// start has none and waits for the client's own timeout.
pub const REFRESH_WAIT: Duration = Duration::from_millis(300);

struct Cached<T> {
    value: T,
    read_at: Instant,
    /// The last failed refresh, if it came after `read_at`.
    failed_at: Option<Instant>,
}

impl<T: Clone> Cached<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            read_at: Instant::now(),
            failed_at: None,
        }
    }
}

/// [`AuthTokens`] backed by Secrets Manager, with a TTL cache shared by all invocations of
/// one Lambda instance. Past the TTL it reads again; if that fails it keeps using what it
/// had, up to [`MAX_STALENESS`].
pub struct SecretsManagerTokens {
    client: Client,
    secret_id: String,
    ttl: Duration,
    max_staleness: Duration,
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
            max_staleness: MAX_STALENESS,
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

    /// Overrides [`MAX_STALENESS`].
    pub fn with_max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
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

    /// The cached value while fresh; else a read, and if that fails the cached value while
    /// it is within the staleness bound.
    async fn cached<V, F, Fut>(
        &self,
        cache: &Mutex<Option<Cached<V>>>,
        stage: &'static str,
        read: F,
    ) -> Result<V, SecretsError>
    where
        V: Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, SecretsError>>,
    {
        let mut cache = cache.lock().await;
        let usable = match cache.as_ref() {
            Some(c) if c.read_at.elapsed() < self.ttl => return Ok(c.value.clone()),
            Some(c) => c.read_at.elapsed() < self.ttl + self.max_staleness,
            None => false,
        };
        let recently_failed = usable
            && cache
                .as_ref()
                .and_then(|c| c.failed_at)
                .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE);
        let result = match usable {
            true if recently_failed => Err(SecretsError::Unavailable(
                "retrying Secrets Manager shortly".into(),
            )),
            true => tokio::time::timeout(REFRESH_WAIT, read())
                .await
                .unwrap_or_else(|_| {
                    Err(SecretsError::Unavailable(format!(
                        "no answer within {REFRESH_WAIT:?}"
                    )))
                }),
            false => read().await,
        };
        match (result, cache.as_mut()) {
            (Ok(value), _) => {
                *cache = Some(Cached::new(value.clone()));
                Ok(value)
            }
            (Err(e), Some(stale)) if usable => {
                if !recently_failed {
                    stale.failed_at = Some(Instant::now());
                    tracing::error!(
                        stage,
                        error = %e,
                        stale_secs = stale.read_at.elapsed().as_secs(),
                        "Secrets Manager unreadable; using the last good token"
                    );
                }
                crate::metrics::count(crate::metrics::name::TOKENS_STALE, 1);
                Ok(stale.value.clone())
            }
            (Err(e), _) => Err(e),
        }
    }
}

impl AuthTokens for SecretsManagerTokens {
    async fn current(&self) -> Result<Arc<TwilioCredentials>, SecretsError> {
        self.cached(&self.current, "AWSCURRENT", || self.read_current())
            .await
    }

    async fn previous(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        self.cached(&self.previous, "AWSPREVIOUS", || self.read("AWSPREVIOUS"))
            .await
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
        *cache = Some(Cached::new(fresh.clone()));
        // The old current is now likely AWSPREVIOUS: forget the cached previous.
        if changed {
            *self.previous.lock().await = None;
        }
        Ok(changed.then_some(fresh))
    }
}
