//! The acknowledge contract every webhook function follows:
//! 405 wrong method; 400 with a one-line reason for a body that is too large, not a form or
//! JSON, or lacks required params; 403 for a missing or bad signature; then the event is made
//! durable (SQS, else the spill: `crate::spill`) and the answer is 204. Only when neither
//! store took it, or the token to check it could not be had, is the answer 503, which Twilio
//! retries only because every URL we give it says so (`twilio::overrides::CALLBACK`; by
//! default Twilio retries nothing but a failed connection). Nothing is enqueued unless every
//! check passed.

use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};

use crate::events::{Envelope, EventKind, IDEMPOTENCY_HEADER};
use crate::metrics::{self, name};
use crate::queue::EventQueue;
use crate::secrets::{AuthTokens, SecretsError, TwilioCredentials};
use crate::spill::{
    self, Deadlines, Delivery, NoSpill, QueueBreaker, SpillStore, Unverifiable, UnverifiedRequest,
    VerifyLater,
};
use crate::telemetry::mask_phone;
use crate::twilio::overrides;
use crate::twilio::params::{DecodeError, ParamError};
use crate::twilio::signature::Algorithm;
use crate::twilio::signature::{self, SIGNATURE_HEADER};
use crate::twilio::{
    ConferenceCallback, Params, RecordingCallback, StatusCallback, TranscriptionCallback,
};

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
    BadSignature(Box<SignatureMismatch>),
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
            Self::MissingSignature | Self::BadSignature(_) => StatusCode::FORBIDDEN,
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

/// What a 403 for a bad signature is logged with, so it can be diagnosed from the log alone
/// (`voicectl verify` with the URL and the request from Twilio's debugger): never the
/// signature or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureMismatch {
    /// The URL the signature was checked over (this stack's public base URL and the request's
    /// path and query); the same with the route's connection overrides was tried too.
    pub url: String,
    /// As the (unverified) body claims them.
    pub call_sid: Option<String>,
    pub account_sid: Option<String>,
    /// The token versions tried, in order: `current`, `previous`, `current re-read`, each
    /// with `unavailable` when it could not be had.
    pub tokens_tried: Vec<&'static str>,
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
    /// Twilio's `I-Twilio-Idempotency-Token`, which rides along in the envelope as its
    /// `delivery_token` (unsigned, so it never replaces the idempotency key).
    fn delivery_token(&self) -> Option<&str> {
        self.idempotency_token.as_deref()
    }
}

enum BodyKind {
    Form,
    Json,
}

/// Checks that a request comes from Twilio: method, size, body, then the signature over the
/// public URL with the current or previous token. What every webhook does first; the voice
/// fallback does nothing else.
pub struct Verifier<T> {
    public_base_url: String,
    tokens: T,
}

impl<T: AuthTokens> Verifier<T> {
    pub fn new(public_base_url: impl Into<String>, tokens: T) -> Self {
        Self {
            public_base_url: public_base_url.into(),
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

        // The auth token's HMAC-SHA1, or a SharedKey's HMAC-SHA256 when the settings header
        // names it; an algorithm we do not know is refused, as the official libraries do.
        let settings = req.header(signature::SIGNATURE_SETTINGS_HEADER);
        let algorithm = Algorithm::from_settings(settings);
        let key_sid = settings.and_then(signature::settings_key);
        // Whether Twilio signs a URL's fragment (its connection overrides) is undocumented:
        // the URL as the request shows it first, then with the fragment this route was given.
        let valid_for = |algorithm, key: &str, url: &str| match kind {
            BodyKind::Form => {
                signature::validate_form_with(algorithm, key, url, params.iter(), signature)
            }
            BodyKind::Json => {
                signature::validate_json_with(algorithm, key, url, req.body, signature)
                    .unwrap_or(false)
            }
        };
        let valid_with_key = |algorithm, key: &str| {
            valid_for(algorithm, key, &url)
                || valid_for(
                    algorithm,
                    key,
                    &overrides::with_overrides(&url, overrides::for_path(req.raw_path)),
                )
        };
        let valid_with = |credentials: &TwilioCredentials| match algorithm {
            Some(Algorithm::HmacSha1) => {
                valid_with_key(Algorithm::HmacSha1, &credentials.auth_token)
            }
            Some(Algorithm::HmacSha256) => credentials
                .shared_key_secrets(key_sid)
                .any(|secret| valid_with_key(Algorithm::HmacSha256, secret)),
            None => false,
        };
        let mut tokens_tried = Vec::new();
        if !self
            .any_token_validates(valid_with, &mut tokens_tried)
            .await
            .map_err(Rejection::TokensUnavailable)?
        {
            return Err(Rejection::BadSignature(Box::new(SignatureMismatch {
                call_sid: params.get("CallSid").map(str::to_owned),
                account_sid: params.get("AccountSid").map(str::to_owned),
                url,
                tokens_tried,
            })));
        }
        let idempotency_token = req.header(IDEMPOTENCY_HEADER).map(str::to_owned);
        Ok(Verified {
            params,
            idempotency_token,
        })
    }

    /// Current token, then the one before a rotation, then a re-read in case the cached
    /// current token is stale. Only the current token is required: when the others cannot be
    /// had (Secrets Manager down) a signature the current one refuses is a 403, not a 503.
    async fn any_token_validates(
        &self,
        valid_with: impl Fn(&TwilioCredentials) -> bool,
        tried: &mut Vec<&'static str>,
    ) -> Result<bool, SecretsError> {
        let current = self.tokens.current().await?;
        tried.push("current");
        if valid_with(&current) {
            return Ok(true);
        }
        match self.tokens.previous().await {
            Ok(Some(previous)) => {
                tried.push("previous");
                if valid_with(&previous) {
                    return Ok(true);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tried.push("previous unavailable");
                tracing::warn!(error = %e, "previous token unavailable; not tried");
            }
        }
        match self.tokens.refresh_current().await {
            Ok(Some(fresh)) => {
                tried.push("current re-read");
                Ok(valid_with(&fresh))
            }
            Ok(None) => Ok(false),
            Err(e) => {
                tried.push("current re-read unavailable");
                tracing::warn!(error = %e, "current token not re-read; the cached one refused");
                Ok(false)
            }
        }
    }
}

/// Checks webhooks and makes their events durable. Built once per cold start; shared by all
/// invocations.
pub struct Acknowledger<Q, T, S = NoSpill> {
    verifier: Verifier<T>,
    queue: Q,
    spill: S,
    /// This instance's view of the queue's health, kept across invocations.
    breaker: QueueBreaker,
    deadlines: Deadlines,
}

impl<Q: EventQueue, T: AuthTokens> Acknowledger<Q, T> {
    /// With the queue alone; [`Acknowledger::with_spill`] adds the second store.
    pub fn new(public_base_url: impl Into<String>, queue: Q, tokens: T) -> Self {
        Self::verified_by(Verifier::new(public_base_url, tokens), queue)
    }

    pub fn verified_by(verifier: Verifier<T>, queue: Q) -> Self {
        Self {
            verifier,
            queue,
            spill: NoSpill,
            breaker: QueueBreaker::new(),
            deadlines: Deadlines::CALLBACK,
        }
    }
}

impl<Q: EventQueue, T: AuthTokens, S: SpillStore> Acknowledger<Q, T, S> {
    /// Where events go when the queue does not take them in time.
    pub fn with_spill<S2: SpillStore>(self, spill: S2) -> Acknowledger<Q, T, S2> {
        Acknowledger {
            verifier: self.verifier,
            queue: self.queue,
            spill,
            breaker: self.breaker,
            deadlines: self.deadlines,
        }
    }

    /// How long the queue, then both stores together, may take (default
    /// [`Deadlines::CALLBACK`]).
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The queue's breaker, as this instance sees it.
    pub fn breaker(&self) -> &QueueBreaker {
        &self.breaker
    }

    /// Everything up to and including the signature check.
    pub async fn verify(&self, req: &WebhookRequest<'_>) -> Result<Verified, Rejection> {
        self.verifier.verify(req).await
    }

    /// `POST /twilio/status`: a call-status callback.
    pub async fn call_status(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::CallStatus).await
    }

    /// `POST /twilio/recording`: a recording-status callback.
    pub async fn recording_status(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::RecordingStatus).await
    }

    /// `POST /twilio/conference`: a conference room's event.
    pub async fn conference_status(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::ConferenceStatus).await
    }

    /// `POST /twilio/transcription`: Twilio's own transcription of a recording.
    pub async fn transcription(&self, req: &WebhookRequest<'_>) -> Reply {
        self.acknowledge(req, EventKind::TranscriptionTwilio).await
    }

    /// The contract every callback follows: verify, read the params into an envelope,
    /// enqueue, answer 204; or the rejection. With no token to check the signature with (a
    /// cold start while Secrets Manager is down), the request is spilled whole, unverified,
    /// and answered 204 ([`spill::UnverifiedRequest`]): 503 only when that fails too.
    async fn acknowledge(&self, req: &WebhookRequest<'_>, kind: EventKind) -> Reply {
        let started = Instant::now();
        let result = async {
            let verified = match self.verify(req).await {
                Err(Rejection::TokensUnavailable(e)) => {
                    return self.defer(req, kind, e).await.map(Accepted::Deferred);
                }
                verified => verified?,
            };
            let (envelope, status) = envelope_for(kind, &verified)?;
            let delivery = self.enqueue(&envelope, self.deadlines).await?;
            let from = verified.params.get("From").map(mask_phone);
            Ok::<_, Rejection>(Accepted::Event {
                envelope,
                status,
                from,
                delivery,
            })
        }
        .await;
        let latency_us = started.elapsed().as_micros() as u64;
        let reply = match result {
            Ok(Accepted::Event {
                envelope,
                status,
                from,
                delivery,
            }) => {
                tracing::info!(
                    call_sid = %envelope.call_sid, kind = kind.as_str(), status,
                    from = from.as_deref(), outcome = "accepted", delivery = delivery.as_str(),
                    latency_us, "webhook accepted"
                );
                metrics::count(name::ACCEPTED, 1);
                Reply::accepted()
            }
            Ok(Accepted::Deferred(why)) => {
                tracing::warn!(
                    kind = kind.as_str(), outcome = "accepted", delivery = "deferred",
                    latency_us, reason = %why,
                    "webhook accepted unverified: spilled whole, checked once the token can be read"
                );
                metrics::count(name::ACCEPTED, 1);
                metrics::count(name::EVENTS_DEFERRED, 1);
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

    /// Spills a request that could not be verified (no token); the rejection when that
    /// fails too.
    async fn defer(
        &self,
        req: &WebhookRequest<'_>,
        kind: EventKind,
        why: SecretsError,
    ) -> Result<SecretsError, Rejection> {
        let request = UnverifiedRequest::of(req, kind);
        match spill::defer(&self.spill, self.deadlines.total, &request).await {
            Ok(()) => Ok(why),
            Err(spill_error) => {
                tracing::warn!(
                    error = spill_error,
                    "could not spill the unverified request"
                );
                Err(Rejection::TokensUnavailable(why))
            }
        }
    }

    /// The queue within its deadline, else the spill (the spill first while the queue's
    /// breaker is open); only when neither took the event is it a rejection (503).
    pub(crate) async fn enqueue(
        &self,
        envelope: &Envelope,
        deadlines: Deadlines,
    ) -> Result<Delivery, Rejection> {
        spill::make_durable(&self.queue, &self.spill, &self.breaker, deadlines, envelope)
            .await
            .map_err(|e| Rejection::QueueUnavailable(e.to_string()))
    }
}

/// What a callback's acknowledgement made durable.
enum Accepted {
    /// Its event, queued or spilled.
    Event {
        envelope: Envelope,
        status: &'static str,
        from: Option<String>,
        delivery: Delivery,
    },
    /// The request itself, unverified (why the token could not be had).
    Deferred(SecretsError),
}

/// A verified callback's event: its params read strictly as `kind`, into an envelope, and
/// the status it reports (for the log line).
fn envelope_for(
    kind: EventKind,
    verified: &Verified,
) -> Result<(Envelope, &'static str), Rejection> {
    let params = &verified.params;
    let token = verified.delivery_token();
    Ok(match kind {
        EventKind::CallStatus => {
            let callback = StatusCallback::parse(params)?;
            (
                Envelope::call_status(&callback, params, token),
                callback.status.as_str(),
            )
        }
        EventKind::RecordingStatus => {
            let callback = RecordingCallback::parse(params)?;
            (
                Envelope::recording_status(&callback, params, token),
                callback.status.as_str(),
            )
        }
        EventKind::ConferenceStatus => {
            let callback = ConferenceCallback::parse(params)?;
            (
                Envelope::conference_status(&callback, params, token),
                callback.event.label(),
            )
        }
        EventKind::TranscriptionTwilio => {
            let callback = TranscriptionCallback::parse(params)?;
            let status = if callback.status == "completed" {
                "completed"
            } else {
                "failed"
            };
            (Envelope::transcription(&callback, params, token), status)
        }
        // The voice webhook answers TwiML; it never takes this path.
        EventKind::CallStarted => {
            return Err(Rejection::BadParams(ParamError::Invalid {
                name: "kind",
                what: "callback kind",
                value: kind.as_str().to_owned(),
            }));
        }
    })
}

impl UnverifiedRequest {
    /// `req` as it arrived, to be checked later.
    pub fn of(req: &WebhookRequest<'_>, kind: EventKind) -> Self {
        use base64::Engine as _;
        Self {
            kind,
            received_at: crate::events::now_rfc3339(),
            raw_path: req.raw_path.to_owned(),
            raw_query: req.raw_query.to_owned(),
            headers: Self::HEADERS
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), req.header(name)?.to_owned())))
                .collect(),
            body: base64::engine::general_purpose::STANDARD.encode(req.body),
        }
    }
}

/// The drainer's later check of a request spilled unverified: the same checks, in the same
/// order, as the webhook's (method, size, body, signature, then the params read strictly).
impl<T: AuthTokens> VerifyLater for Verifier<T> {
    async fn envelope(&self, request: &UnverifiedRequest) -> Result<Envelope, Unverifiable> {
        let body = request.body_bytes().map_err(Unverifiable::Refused)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) else {
                return Err(Unverifiable::Refused(format!("unreadable header {name}")));
            };
            headers.insert(name, value);
        }
        let req = WebhookRequest {
            method: &Method::POST,
            headers: &headers,
            raw_path: &request.raw_path,
            raw_query: &request.raw_query,
            body: &body,
        };
        let refused = |rejection: Rejection| match rejection {
            Rejection::TokensUnavailable(e) => Unverifiable::NotYet(e.to_string()),
            other => Unverifiable::Refused(other.to_string()),
        };
        let verified = self.verify(&req).await.map_err(refused)?;
        let (mut envelope, _) = envelope_for(request.kind, &verified).map_err(refused)?;
        envelope.received_at.clone_from(&request.received_at);
        Ok(envelope)
    }
}

/// Logs a rejection and counts it in the invocation's metrics.
pub(crate) fn log_rejection(rejection: &Rejection, kind: &str, latency_us: u64) {
    let outcome = rejection.outcome();
    metrics::count(
        match rejection {
            Rejection::MissingSignature | Rejection::BadSignature(_) => name::SIGNATURE_FAILURES,
            Rejection::QueueUnavailable(_) | Rejection::TokensUnavailable(_) => {
                name::ENQUEUE_FAILURES
            }
            _ => name::BAD_REQUESTS,
        },
        1,
    );
    match rejection {
        // Loud: these lose nothing only if Twilio retries, as our URLs' overrides ask.
        Rejection::QueueUnavailable(detail) => {
            tracing::error!(kind, outcome, latency_us, error = %detail, "event neither queued nor spilled; answered 503")
        }
        Rejection::TokensUnavailable(e) => {
            tracing::error!(kind, outcome, latency_us, error = %e, "auth token unavailable; answered 503")
        }
        // Everything `voicectl verify` needs besides the params (Twilio's debugger, error
        // 11200, shows them), none of what a forger would want.
        Rejection::BadSignature(m) => tracing::warn!(
            kind, outcome, latency_us, reason = %rejection, url = %m.url,
            call_sid = m.call_sid.as_deref(), account_sid = m.account_sid.as_deref(),
            tokens_tried = %m.tokens_tried.join(", "), "webhook rejected"
        ),
        other => tracing::warn!(kind, outcome, latency_us, reason = %other, "webhook rejected"),
    }
}
