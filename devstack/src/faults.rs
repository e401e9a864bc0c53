//! A fault-injecting proxy in front of the emulator: the chaos run's "AWS having a bad day",
//! and a counter of what each function asks of AWS.
//!
//! Each function gets its own listener (its `AWS_ENDPOINT_URL`), so the proxy knows who is
//! asking. A request is forwarded to moto unless a rule of the [`FaultPlan`] answers first.
//! The faults are the ones AWS documents as retryable (HTTP 500 `InternalServerError` /
//! `InternalError`), in two shapes: refused (nothing happened) and applied-but-lost (the write
//! happened, the answer did not arrive), the case that turns an SDK retry into a duplicate.
//! SDK interceptors could refuse, but only a proxy can lose an answer after the write.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::oneshot;

/// What goes wrong, and how often. `FaultPlan::default()` injects nothing (a plain counter).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub seed: u64,
    /// Share of the callback webhooks' SQS sends refused on every attempt, so the webhook
    /// answers 5xx and Twilio retries. Decided once per message body (a retry by the SDK
    /// sends the same body; Twilio's retry makes a new envelope, drawn again).
    pub enqueue_failure_rate: f64,
    /// Share of SQS sends (any function) delivered but answered 500: the SDK sends again.
    pub sqs_lost_response_rate: f64,
    /// Share of DynamoDB writes refused with a 500.
    pub dynamodb_error_rate: f64,
    /// Share of DynamoDB writes applied but answered 500.
    pub dynamodb_lost_response_rate: f64,
    /// Share of S3 writes (PutObject, multipart) refused with a 500.
    pub s3_error_rate: f64,
    /// Share of `StartTranscriptionJob` calls that start the job but answer 500.
    pub transcribe_lost_response_rate: f64,
    /// Text (CallSids) whose DynamoDB writes all fail until [`FaultProxy::fix`]: a bug that
    /// sends those calls' events to the DLQ until the fix is deployed.
    pub poisoned: Vec<String>,
    /// Share of the callback webhooks' spill writes refused: with the enqueue refused too,
    /// the webhook answers 503, and only the URL's overrides make Twilio try again. Never
    /// during an outage (then the spill is what keeps the promise).
    pub spill_failure_rate: f64,
    /// Services that answer nothing but 503 for a while (from [`FaultProxy::start_clock`]).
    pub outages: Vec<Outage>,
    /// Services that answer, slowly, for a while (from [`FaultProxy::start_clock`]).
    pub slowdowns: Vec<Slowdown>,
}

/// A service slow for a while: every request to it through the proxy waits `delay` before
/// it is forwarded, what a throttled table looks like from the SDK (its retries of
/// `ProvisionedThroughputExceededException` with backoff) or a hot partition. Below the
/// SDK's attempt timeout (3 s), so requests succeed, late: batches run into their deadline.
#[derive(Debug, Clone)]
pub struct Slowdown {
    /// The SigV4 service name: `dynamodb`.
    pub service: &'static str,
    /// When it starts, after the clock started.
    pub from: std::time::Duration,
    pub lasts: std::time::Duration,
    pub delay: std::time::Duration,
    /// Only requests whose body holds this text (a CallSid: one hot item); every request of
    /// the service when `None`.
    pub matching: Option<String>,
}

/// A service down for a while: every request to it through the proxy answers 503
/// `ServiceUnavailable`, as AWS does when a service cannot serve.
#[derive(Debug, Clone)]
pub struct Outage {
    /// The SigV4 service name: `sqs`, `secretsmanager`.
    pub service: &'static str,
    /// When it starts, after the clock started.
    pub from: std::time::Duration,
    pub lasts: std::time::Duration,
}

/// One fault the proxy injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    EnqueueRefused,
    SqsResponseLost,
    DynamoDbRefused,
    DynamoDbResponseLost,
    S3Refused,
    TranscribeResponseLost,
    Poisoned,
    SpillRefused,
    SqsOutage,
    SecretsManagerOutage,
    /// Forwarded after a [`Slowdown`]'s delay.
    Slowed,
}

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Self::EnqueueRefused => "callback enqueue refused on every attempt: spilled",
            Self::SqsResponseLost => "SQS send applied, answer lost",
            Self::DynamoDbRefused => "DynamoDB write refused",
            Self::DynamoDbResponseLost => "DynamoDB write applied, answer lost",
            Self::S3Refused => "S3 write refused",
            Self::TranscribeResponseLost => "Transcribe job started, answer lost",
            Self::Poisoned => "poisoned call's DynamoDB write refused",
            Self::SpillRefused => "spill refused too on every attempt: 503",
            Self::SqsOutage => "SQS requests refused in its outage",
            Self::SecretsManagerOutage => "Secrets Manager requests refused in its outage",
            Self::Slowed => "DynamoDB requests slowed in its slow spell",
        }
    }

    fn is_outage(self) -> bool {
        matches!(self, Self::SqsOutage | Self::SecretsManagerOutage)
    }

    /// Refused faults are answered without forwarding; the others after.
    fn forwards(self) -> bool {
        matches!(
            self,
            Self::SqsResponseLost | Self::DynamoDbResponseLost | Self::TranscribeResponseLost
        )
    }
}

/// The operation a request asks for: (service, operation), e.g. ("dynamodb", "UpdateItem").
pub type Operation = (String, String);

#[derive(Default)]
struct Counters {
    /// Requests by (listener label, service, operation).
    requests: BTreeMap<(String, String, String), u64>,
    injected: BTreeMap<Fault, u64>,
    /// `StartTranscriptionJob` calls that started a job, by job name.
    transcription_starts: HashMap<String, u32>,
    /// The refusal draw of each (service, request body) seen.
    doomed_bodies: HashMap<u64, bool>,
    /// How long the emulator took to answer each webhook request the proxy forwarded, in
    /// ms, as the proxy saw it (its queueing in waitress included, which moto's own
    /// `EMULATOR-LOAD` figures cannot see). At most [`WEBHOOK_ANSWERS_KEPT`].
    webhook_answers: Vec<u64>,
}

/// A run's webhook requests, with room to spare (a 1,000-call chaos run sends about 20,000).
const WEBHOOK_ANSWERS_KEPT: usize = 1_000_000;

impl Counters {
    fn note_webhook_answer(&mut self, took: std::time::Duration) {
        if self.webhook_answers.len() < WEBHOOK_ANSWERS_KEPT {
            self.webhook_answers.push(took.as_millis() as u64);
        }
    }
}

struct ProxyState {
    upstream: String,
    plan: FaultPlan,
    fixed: AtomicBool,
    /// When the outages' clock started.
    clock: Mutex<Option<std::time::Instant>>,
    client: reqwest::Client,
    rng: Mutex<ChaCha8Rng>,
    counters: Mutex<Counters>,
}

/// The proxy; each [`FaultProxy::listen`] adds a listener. Stopped when dropped.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    listeners: Mutex<Vec<oneshot::Sender<()>>>,
}

impl FaultProxy {
    pub fn new(upstream: &str, plan: FaultPlan) -> anyhow::Result<Self> {
        Ok(Self {
            state: Arc::new(ProxyState {
                upstream: upstream.trim_end_matches('/').to_owned(),
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(plan.seed)),
                plan,
                fixed: AtomicBool::new(false),
                clock: Mutex::new(None),
                client: reqwest::Client::builder().no_proxy().build()?,
                counters: Mutex::default(),
            }),
            listeners: Mutex::default(),
        })
    }

    /// A new listener on a free loopback port for `label` (a function's name); its endpoint.
    pub async fn listen(&self, label: &str) -> anyhow::Result<String> {
        let app = Router::new()
            .fallback(forward)
            .with_state((self.state.clone(), Arc::<str>::from(label)));
        let (addr, stop) = crate::task::serve(app).await?;
        lock(&self.listeners).push(stop);
        Ok(format!("http://{addr}"))
    }

    /// Starts the clock the plan's outages are timed from (the calls' start).
    pub fn start_clock(&self) {
        *lock(&self.state.clock) = Some(std::time::Instant::now());
    }

    /// When [`Self::start_clock`] was called, if it was.
    pub fn clock_started(&self) -> Option<std::time::Instant> {
        *lock(&self.state.clock)
    }

    /// The fix is deployed: poisoned calls' writes go through from now on.
    pub fn fix(&self) {
        self.state.fixed.store(true, Ordering::SeqCst);
    }

    /// Requests for `operation` of `service` from listeners whose label starts with `label`.
    pub fn requests(&self, label: &str, service: &str, operation: &str) -> u64 {
        lock(&self.state.counters)
            .requests
            .iter()
            .filter(|((l, s, o), _)| l.starts_with(label) && s == service && o == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request counted, by (label, service, operation).
    pub fn all_requests(&self) -> BTreeMap<(String, String, String), u64> {
        lock(&self.state.counters).requests.clone()
    }

    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        lock(&self.state.counters).injected.clone()
    }

    /// How long the emulator took to answer each webhook request (ms), in arrival order.
    pub fn webhook_answers(&self) -> Vec<u64> {
        lock(&self.state.counters).webhook_answers.clone()
    }

    /// Jobs `StartTranscriptionJob` started, by name, with how many calls started each.
    pub fn transcription_starts(&self) -> HashMap<String, u32> {
        lock(&self.state.counters).transcription_starts.clone()
    }

    pub fn stop(&self) {
        for stop in lock(&self.listeners).drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A poisoned lock only means a panicking test; the counters are still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The service and operation of an AWS request: the JSON protocols name it in
/// `X-Amz-Target` (`DynamoDB_20120810.UpdateItem`); S3 by method and query.
pub fn operation(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Operation {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // SigV4's credential scope: Credential=<key>/<date>/<region>/<service>/aws4_request.
    let service = header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    if let Some(target) = header("x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target);
        return (service, op.to_owned());
    }
    let query = uri.query().unwrap_or_default();
    let has = |name: &str| {
        query
            .split('&')
            .any(|p| p == name || p.starts_with(&format!("{name}=")))
    };
    let op = match *method {
        Method::PUT if has("partNumber") => "UploadPart",
        Method::PUT if header("x-amz-copy-source").is_some() => "CopyObject",
        Method::PUT => "PutObject",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        Method::DELETE => "DeleteObject",
        Method::HEAD => "HeadObject",
        Method::GET if has("uploads") => "ListMultipartUploads",
        Method::GET if has("list-type") => "ListObjectsV2",
        Method::GET => "GetObject",
        _ => "other",
    };
    (service, op.to_owned())
}

const DYNAMODB_WRITES: &[&str] = &[
    "UpdateItem",
    "PutItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];
const S3_WRITES: &[&str] = &[
    "PutObject",
    "UploadPart",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
];
/// The webhooks whose refused enqueue Twilio retries (the voice webhook answers TwiML
/// whatever happens, so a refusal there would be a lost `call.started` by design).
const CALLBACK_WEBHOOKS: &[&str] = &[
    "webhook-status",
    "webhook-recording",
    "webhook-transcription",
];

impl ProxyState {
    /// Whether a request with this body is refused, drawn once per body: the SDK's retries
    /// send the same body and meet the same answer; Twilio's retry makes a new envelope
    /// (a new `received_at`), drawn again.
    fn doomed(&self, service: &str, body: &[u8], rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut hasher = DefaultHasher::new();
        (service, body).hash(&mut hasher);
        let key = hasher.finish();
        let known = lock(&self.counters).doomed_bodies.get(&key).copied();
        known.unwrap_or_else(|| {
            let doomed = lock(&self.rng).random_bool(rate.min(1.0));
            lock(&self.counters).doomed_bodies.insert(key, doomed);
            doomed
        })
    }

    /// How long a request of `service` with `body` waits now, if it is in a slowdown.
    fn slowdown(&self, service: &str, body: &[u8]) -> Option<std::time::Duration> {
        let elapsed = (*lock(&self.clock))?.elapsed();
        let text = String::from_utf8_lossy(body);
        self.plan
            .slowdowns
            .iter()
            .find(|s| {
                s.service == service
                    && elapsed >= s.from
                    && elapsed < s.from + s.lasts
                    && s.matching.as_deref().is_none_or(|m| text.contains(m))
            })
            .map(|s| s.delay)
    }

    /// The outage `service` is in now, if any.
    fn outage(&self, service: &str) -> Option<Fault> {
        let elapsed = (*lock(&self.clock))?.elapsed();
        self.plan
            .outages
            .iter()
            .find(|o| o.service == service && elapsed >= o.from && elapsed < o.from + o.lasts)
            .map(|o| match o.service {
                "sqs" => Fault::SqsOutage,
                _ => Fault::SecretsManagerOutage,
            })
    }

    fn decide(&self, label: &str, (service, op): (&str, &str), body: &[u8]) -> Option<Fault> {
        let plan = &self.plan;
        let draw = |rate: f64| rate > 0.0 && lock(&self.rng).random_bool(rate.min(1.0));
        let outage = self.outage(service);
        if outage.is_some() {
            return outage;
        }
        match (service, op) {
            ("sqs", "SendMessage" | "SendMessageBatch") => {
                if CALLBACK_WEBHOOKS.contains(&label)
                    && self.doomed(service, body, plan.enqueue_failure_rate)
                {
                    return Some(Fault::EnqueueRefused);
                }
                draw(plan.sqs_lost_response_rate).then_some(Fault::SqsResponseLost)
            }
            ("dynamodb", op) if DYNAMODB_WRITES.contains(&op) => {
                let text = String::from_utf8_lossy(body);
                if !self.fixed.load(Ordering::SeqCst)
                    && plan.poisoned.iter().any(|p| text.contains(p.as_str()))
                {
                    Some(Fault::Poisoned)
                } else if draw(plan.dynamodb_error_rate) {
                    Some(Fault::DynamoDbRefused)
                } else {
                    draw(plan.dynamodb_lost_response_rate).then_some(Fault::DynamoDbResponseLost)
                }
            }
            // The callback webhooks' only S3 write is the spill: their events when SQS does
            // not take them, their requests unverified when the token cannot be read. Not
            // refused while SQS or Secrets Manager is down: the promise is durability
            // whatever *one* service is doing, and two down at once is not this run's day.
            ("s3", "PutObject") if CALLBACK_WEBHOOKS.contains(&label) => {
                let one_down = plan
                    .outages
                    .iter()
                    .any(|o| self.outage(o.service).is_some());
                (!one_down && self.doomed(service, body, plan.spill_failure_rate))
                    .then_some(Fault::SpillRefused)
            }
            ("s3", op) if S3_WRITES.contains(&op) => {
                draw(plan.s3_error_rate).then_some(Fault::S3Refused)
            }
            ("transcribe", "StartTranscriptionJob") => {
                draw(plan.transcribe_lost_response_rate).then_some(Fault::TranscribeResponseLost)
            }
            _ => None,
        }
    }
}

/// What a service down answers: 503 `ServiceUnavailable` in its JSON protocol's format.
fn unavailable() -> Response {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
        .body(Body::from(
            r#"{"__type":"ServiceUnavailable","message":"Service is unavailable (an outage injected by devstack)"}"#,
        ))
        .unwrap_or_default()
}

/// What AWS answers when it has a bad moment: a 500 in the service's error format.
fn injected_error(service: &str) -> Response {
    let (content_type, body) = if service == "s3" {
        (
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
             <Message>We encountered an internal error. Please try again. (injected by devstack)</Message></Error>"
                .to_owned(),
        )
    } else {
        (
            "application/x-amz-json-1.0",
            r#"{"__type":"InternalServerError","message":"Internal server error (injected by devstack)"}"#
                .to_owned(),
        )
    };
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Headers that describe one hop, not the message (a request's length is set again from
/// the buffered body; a response's is kept: a HEAD's answer has no body but a length).
/// `Host` is passed on: the caller signed it (SigV4), and the emulator checks signatures.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    [header::CONNECTION, header::TRANSFER_ENCODING].contains(name)
}

async fn forward(
    State((state, label)): State<(Arc<ProxyState>, Arc<str>)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Body::from(format!("unreadable body: {e}")))
                .unwrap_or_default();
        }
    };
    let (service, op) = operation(&parts.method, &parts.uri, &parts.headers);
    *lock(&state.counters)
        .requests
        .entry((label.to_string(), service.clone(), op.clone()))
        .or_default() += 1;
    if let Some(delay) = state.slowdown(&service, &body) {
        *lock(&state.counters)
            .injected
            .entry(Fault::Slowed)
            .or_default() += 1;
        tokio::time::sleep(delay).await;
    }
    let fault = state.decide(&label, (&service, &op), &body);
    if let Some(fault) = fault {
        *lock(&state.counters).injected.entry(fault).or_default() += 1;
        if fault.is_outage() {
            return unavailable();
        }
        if !fault.forwards() {
            return injected_error(&service);
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream))
        .body(body.clone());
    let request_headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !hop_by_hop(n) && *n != header::CONTENT_LENGTH);
    for (name, value) in request_headers {
        upstream = upstream.header(name, value);
    }
    let exchange = async move {
        let answer = upstream.send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, headers, bytes))
    };
    // A caller that times out drops this handler, and with it the request to the emulator,
    // which then drops it too if it has not started it (`moto_server.py`, `_abandoned`):
    // otherwise every request a worker gave up on is still served, in front of its retry,
    // and a backlog after an outage feeds on itself. A transcription job is the exception:
    // one that starts must be counted, so its request runs to the end in a task of its own.
    let upstream_at = std::time::Instant::now();
    let answered = if op == "StartTranscriptionJob" {
        let counting = state.clone();
        tokio::spawn(async move {
            let answered = exchange.await?;
            if answered.0.is_success() {
                let name = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["TranscriptionJobName"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                *lock(&counting.counters)
                    .transcription_starts
                    .entry(name)
                    .or_default() += 1;
            }
            Ok(answered)
        })
        .await
        .unwrap_or_else(|e| Err(format!("proxy task failed: {e}")))
    } else {
        exchange.await
    };
    if label.starts_with("webhook") {
        lock(&state.counters).note_webhook_answer(upstream_at.elapsed());
    }
    let (status, headers, bytes) = match answered {
        Ok(answered) => answered,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("emulator unreachable: {e}")))
                .unwrap_or_default();
        }
    };
    if fault.is_some() {
        return injected_error(&service);
    }
    let mut response = Response::builder().status(status);
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        response = response.header(name, value);
    }
    response.body(Body::from(bytes)).unwrap_or_default()
}
