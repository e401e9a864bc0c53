//! The acknowledge contract every webhook function follows (see DESIGN.md):
//! 405 wrong method; 400 with a one-line reason for a body that is too large, not a form or
//! JSON, or lacks required params; 403 for a missing or bad signature; 503 when the event
//! (or the token to check it) could not be had, so Twilio retries; else enqueue, then 204.
//! Nothing is enqueued unless every check passed.

use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};

use crate::events::{Envelope, EventKind, IDEMPOTENCY_HEADER};
use crate::metrics::{self, name};
use crate::queue::EventQueue;
use crate::secrets::{AuthTokens, SecretsError};
use crate::telemetry::mask_phone;
use crate::twilio::params::{DecodeError, ParamError};
use crate::twilio::signature::{self, SIGNATURE_HEADER};
use crate::twilio::{Params, RecordingCallback, StatusCallback, TranscriptionCallback};

/// Twilio's webhooks are a few KiB; anything past this is not Twilio.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP request as the webhook functions see it, independent of the Lambda event shape.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The path API Gateway reports (`rawPath`), without our base URL.
    pub raw_path: &'a str,
    /// The query exactly as sent, without `?`; empty when there is none.
    pub raw_query: &'a str,
    pub body: &'a [u8],
}

impl WebhookRequest<'_> {
    /// The URL Twilio signed: the configured public base, the raw path and the raw query.
    pub fn public_url(&self, public_base_url: &str) -> String {
        let mut url = format!("{}{}", public_base_url.trim_end_matches('/'), self.raw_path);
        if !self.raw_query.is_empty() {
            url.push('?');
            url.push_str(self.raw_query);
        }
        url
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a webhook was not accepted. Each maps to one status code and one line of text.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("method {0} not allowed; Twilio webhooks are POST")]
    MethodNotAllowed(String),
    #[error("body over 64 KiB ({0} bytes)")]
    TooLarge(usize),
    #[error(
        "unsupported content type {0:?}; expected application/x-www-form-urlencoded or application/json"
    )]
    UnsupportedContentType(String),
    #[error("{0}")]
    Undecodable(#[from] DecodeError),
    #[error("JSON body without bodySHA256 in the URL")]
    JsonWithoutBodyHash,
    #[error("missing X-Twilio-Signature")]
    MissingSignature,
    #[error("invalid X-Twilio-Signature")]
    BadSignature,
    #[error("{0}")]
    BadParams(#[from] ParamError),
    #[error("auth token unavailable, retry later")]
    TokensUnavailable(#[source] SecretsError),
    #[error("event not queued, retry later")]
    QueueUnavailable(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingSignature | Self::BadSignature => StatusCode::FORBIDDEN,
            Self::TokensUnavailable(_) | Self::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::TooLarge(_)
            | Self::UnsupportedContentType(_)
            | Self::Undecodable(_)
            | Self::JsonWithoutBodyHash
            | Self::BadParams(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The outcome name used in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "bad_request",
        }
    }
}

/// The HTTP answer, independent of the Lambda response shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<&'static str>,
    /// Extra headers (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: String,
}

impl Reply {
    pub fn accepted() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: None,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A TwiML document (always 200: Twilio reads the body only then).
    pub fn twiml(xml: String) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: Some("text/xml; charset=utf-8"),
            headers: Vec::new(),
            body: xml,
        }
    }

    pub fn rejected(rejection: &Rejection) -> Self {
        let headers = match rejection {
            Rejection::MethodNotAllowed(_) => vec![("allow", "POST")],
            _ => Vec::new(),
        };
        Self {
            status: rejection.status(),
            content_type: Some("text/plain; charset=utf-8"),
            headers,
            body: format!("{rejection}\n"),
        }
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub params: Params,
    pub idempotency_token: Option<String>,
}

impl Verified {
    fn token(&self) -> Option<&str> {
        self.idempotency_token.as_deref()
    }
}

enum BodyKind {
    Form,
    Json,
}

/// Checks and enqueues webhooks. Built once per cold start; shared by all invocations.
pub struct Acknowledger<Q, T> {
    public_base_url: String,
    queue: Q,
    tokens: T,
}

impl<Q: EventQueue, T: AuthTokens> Acknowledger<Q, T> {
    pub fn new(public_base_url: impl Into<String>, queue: Q, tokens: T) -> Self {
        Self {
            public_base_url: public_base_url.into(),
            queue,
            tokens,
        }
    }

    /// Everything up to and including the signature check.
    pub async fn verify(&self, req: &WebhookRequest<'_>) -> Result<Verified, Rejection> {
        if req.method != Method::POST {
            return Err(Rejection::MethodNotAllowed(req.method.to_string()));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(Rejection::TooLarge(req.body.len()));
        }
        let content_type = req.header("content-type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        let (kind, params) = if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            (BodyKind::Form, Params::from_form(req.body)?)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            (BodyKind::Json, Params::from_json(req.body)?)
        } else {
            return Err(Rejection::UnsupportedContentType(
                content_type.chars().take(80).collect(),
            ));
        };
        let url = req.public_url(&self.public_base_url);
        if matches!(kind, BodyKind::Json) && signature::body_sha256_param(&url).is_none() {
            return Err(Rejection::JsonWithoutBodyHash);
        }
        let signature = req
            .header(SIGNATURE_HEADER)
            .filter(|s| !s.is_empty())
            .ok_or(Rejection::MissingSignature)?;

        let valid_with = |token: &str| match kind {
            BodyKind::Form => signature::validate_form(token, &url, params.iter(), signature),
            BodyKind::Json => {
                signature::validate_json(token, &url, req.body, signature).unwrap_or(false)
            }
        };
        if !self
            .any_token_validates(valid_with)
            .await
            .map_err(Rejection::TokensUnavailable)?
        {
            return Err(Rejection::BadSignature);
        }
        let idempotency_token = req.header(IDEMPOTENCY_HEADER).map(str::to_owned);
        Ok(Verified {
            params,
            idempotency_token,
        })
    }

    /// Current token, then the one before a rotation, then a re-read in case the cached
    /// current token is stale.
    async fn any_token_validates(
        &self,
        valid_with: impl Fn(&str) -> bool,
    ) -> Result<bool, SecretsError> {
        if valid_with(&self.tokens.current().await?.auth_token) {
            return Ok(true);
        }
        if let Some(previous) = self.tokens.previous().await?
            && valid_with(&previous.auth_token)
        {
            return Ok(true);
        }
        Ok(self
            .tokens
            .refresh_current()
            .await?
            .is_some_and(|fresh| valid_with(&fresh.auth_token)))
    }

    /// `POST /twilio/status`: a call-status callback.
    pub async fn call_status(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::CallStatus, |v| {
            let callback = StatusCallback::parse(&v.params)?;
            let status = callback.status.as_str();
            let envelope = Envelope::call_status(&callback, &v.params, v.token());
            Ok((envelope, status))
        })
        .await
    }

    /// `POST /twilio/recording`: a recording-status callback.
    pub async fn recording_status(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::RecordingStatus, |v| {
            let callback = RecordingCallback::parse(&v.params)?;
            let status = callback.status.as_str();
            let envelope = Envelope::recording_status(&callback, &v.params, v.token());
            Ok((envelope, status))
        })
        .await
    }

    /// `POST /twilio/transcription`: Twilio's own transcription of a recording.
    pub async fn transcription(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::TranscriptionTwilio, |v| {
            let callback = TranscriptionCallback::parse(&v.params)?;
            let envelope = Envelope::transcription(&callback, &v.params, v.token());
            Ok((
                envelope,
                if callback.status == "completed" {
                    "completed"
                } else {
                    "failed"
                },
            ))
        })
        .await
    }

    /// The contract every callback follows: verify, read the params into an envelope,
    /// enqueue, answer 204; or the rejection.
    async fn acknowledge(
        &self,
        req: &WebhookRequest<'_>,
        kind: EventKind,
        envelope: impl FnOnce(&Verified) -> Result<(Envelope, &'static str), Rejection>,
    ) -> Reply {
        let started = Instant::now();
        let result = async {
            let verified = self.verify(req).await?;
            let (envelope, status) = envelope(&verified)?;
            self.enqueue(&envelope).await?;
            let from = verified.params.get("From").map(mask_phone);
            Ok::<_, Rejection>((envelope, status, from))
        }
        .await;
        let latency_us = started.elapsed().as_micros() as u64;
        let reply = match result {
            Ok((envelope, status, from)) => {
                tracing::info!(
                    call_sid = %envelope.call_sid, kind = kind.as_str(), status,
                    from = from.as_deref(), outcome = "accepted", latency_us, "webhook accepted"
                );
                metrics::count(name::ACCEPTED, 1);
                Reply::accepted()
            }
            Err(rejection) => {
                log_rejection(&rejection, kind.as_str(), latency_us);
                Reply::rejected(&rejection)
            }
        };
        metrics::millis(name::ACK_LATENCY, latency_us);
        metrics::flush();
        reply
    }

    pub(crate) async fn enqueue(&self, envelope: &Envelope) -> Result<(), Rejection> {
        self.queue
            .send(envelope)
            .await
            .map_err(|e| Rejection::QueueUnavailable(e.0))
    }
}

/// Logs a rejection and counts it in the invocation's metrics.
pub(crate) fn log_rejection(rejection: &Rejection, kind: &str, latency_us: u64) {
    let outcome = rejection.outcome();
    metrics::count(
        match rejection {
            Rejection::MissingSignature | Rejection::BadSignature => name::SIGNATURE_FAILURES,
            Rejection::QueueUnavailable(_) | Rejection::TokensUnavailable(_) => {
                name::ENQUEUE_FAILURES
            }
            _ => name::BAD_REQUESTS,
        },
        1,
    );
    match rejection {
        // Loud: these lose nothing only because Twilio retries.
        Rejection::QueueUnavailable(detail) => {
            tracing::error!(kind, outcome, latency_us, error = %detail, "event not queued; answered 503 so Twilio retries")
        }
        Rejection::TokensUnavailable(e) => {
            tracing::error!(kind, outcome, latency_us, error = %e, "auth token unavailable; answered 503")
        }
        other => tracing::warn!(kind, outcome, latency_us, reason = %other, "webhook rejected"),
    }
}
