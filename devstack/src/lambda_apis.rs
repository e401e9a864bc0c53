//! The Lambda APIs as Lambda serves them, in front of cargo-lambda's: the Runtime API with
//! each invocation's deadline, and the invoke side (function URLs, the Invoke API) scaled as
//! Lambda scales a function.
//!
//! **Deadline.** cargo-lambda's runtime answers every `GET …/invocation/next` with
//! `Lambda-Runtime-Deadline-Ms: 600000` (`crates/cargo-lambda-watch/src/runtime/
//! functions_router.rs`, 1.9.2): ten minutes after 1970, a deadline already past. Lambda sends
//! the invocation's real end (start plus the function's timeout), and our workers settle
//! before it. This proxy sits between the functions and cargo-lambda and sets the header as
//! Lambda would, from each function's timeout; everything else passes through unchanged.
//!
//! **Billing.** It also times each invocation as Lambda bills it: from the event handed over
//! (`next` answered) to the function's `…/response` or `…/error` for it ("Lambda pricing":
//! duration is from when the code begins executing until it returns), for `make bench`'s
//! GB-seconds.
//!
//! **Scaling.** Lambda serves each request in flight with an execution environment of its
//! own, creating one (a cold start) when none is free, up to the function's concurrency
//! (its reserved concurrency, an SQS mapping's MaximumConcurrency, else the account's
//! unreserved pool); a request never waits behind another in an environment ("Understanding
//! Lambda function scaling", Lambda Developer Guide). cargo-lambda queues every invocation
//! of a function for whichever of its processes polls next, so the proxy counts the requests
//! in flight per function and has a [`Scaler`] start another instance whenever they
//! outnumber the instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use tokio::sync::oneshot;

const DEADLINE_HEADER: &str = "lambda-runtime-deadline-ms";

struct Upstream {
    base: String,
    /// Each function's timeout, by name.
    timeouts: HashMap<String, Duration>,
    client: reqwest::Client,
    timing: Mutex<Timing>,
    /// Invocations in flight, by function.
    in_flight: Mutex<HashMap<String, usize>>,
    scaler: OnceLock<Arc<dyn Scaler>>,
}

/// Starts instances of a function when its requests in flight outnumber them.
pub trait Scaler: Send + Sync {
    /// `function` has `in_flight` requests in flight, this one included.
    fn scale_to(&self, function: &str, in_flight: usize);
}

/// One invocation in flight, counted until it is answered or its caller gives up.
struct InFlight<'u> {
    upstream: &'u Upstream,
    function: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.upstream.in_flight().get_mut(&self.function) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Invocations under way (request id → function, start) and the durations of those done.
#[derive(Default)]
struct Timing {
    started: HashMap<String, (String, Instant)>,
    durations: HashMap<String, Vec<Duration>>,
}

/// The proxy; stopped when dropped.
pub struct LambdaApis {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    upstream: Arc<Upstream>,
}

impl LambdaApis {
    /// Proxies `upstream` (cargo-lambda's Lambda APIs), with each function's timeout, on
    /// `port` (a free one when `None`).
    pub async fn start(
        upstream: &str,
        timeouts: HashMap<String, Duration>,
        port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            timeouts,
            // No timeout: `next` is a long poll that waits for the next invocation, and an
            // invocation waits as long as its caller does.
            client: reqwest::Client::builder().no_proxy().build()?,
            timing: Mutex::default(),
            in_flight: Mutex::default(),
            scaler: OnceLock::new(),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let (addr, stop) = crate::task::serve_on(app, port.unwrap_or(0)).await?;
        Ok(Self {
            port: addr.port(),
            stop: Some(stop),
            upstream: state,
        })
    }

    /// The durations of the invocations each function finished since the last call.
    pub fn take_durations(&self) -> HashMap<String, Vec<Duration>> {
        std::mem::take(&mut self.upstream.timing().durations)
    }

    /// What a function's `AWS_LAMBDA_RUNTIME_API` is.
    pub fn runtime_api(&self, function: &str) -> String {
        format!("http://127.0.0.1:{}/.rt/{function}", self.port)
    }

    /// Who starts instances when requests outnumber them (set once, after the instances'
    /// host exists: it needs [`Self::runtime_api`]).
    pub fn scale_with(&self, scaler: Arc<dyn Scaler>) {
        let _ = self.upstream.scaler.set(scaler);
    }
}

impl Drop for LambdaApis {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Upstream {
    fn timing(&self) -> std::sync::MutexGuard<'_, Timing> {
        self.timing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an invocation of `function` in flight, and has it scaled to the count.
    fn invoked(&self, function: &str) -> InFlight<'_> {
        let in_flight = {
            let mut counts = self.in_flight();
            let n = counts.entry(function.to_owned()).or_default();
            *n += 1;
            *n
        };
        if let Some(scaler) = self.scaler.get() {
            scaler.scale_to(function, in_flight);
        }
        InFlight {
            upstream: self,
            function: function.to_owned(),
        }
    }

    /// `path` ends an invocation (`…/invocation/{id}/response` or `/error`): its duration.
    fn ended(&self, path: &str, at: Instant) {
        let mut segments = path.rsplit('/');
        let (Some("response" | "error"), Some(id)) = (segments.next(), segments.next()) else {
            return;
        };
        let mut timing = self.timing();
        if let Some((function, started)) = timing.started.remove(id) {
            timing
                .durations
                .entry(function)
                .or_default()
                .push(at.saturating_duration_since(started));
        }
    }
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    match relay(&upstream, request).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("runtime proxy: {e}")))
            .unwrap_or_default(),
    }
}

/// The function an invocation is for: a function URL (`/lambda-url/<function>/…`) or the
/// Invoke API (`/2015-03-31/functions/<function>/invocations`); `None` for the Runtime API.
fn invoked_function(path: &str) -> Option<&str> {
    if let Some(rest) = path.strip_prefix("/lambda-url/") {
        return rest.split(['/', '?']).next().filter(|f| !f.is_empty());
    }
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let (function, tail) = rest.split_once('/')?;
    tail.starts_with("invocations").then_some(function)
}

async fn relay(upstream: &Upstream, request: Request) -> anyhow::Result<Response> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let _in_flight = invoked_function(&path).map(|function| upstream.invoked(function));
    let function = path
        .strip_prefix("/.rt/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = request.into_parts();
    let (arrived, ends) = (Instant::now(), parts.method == axum::http::Method::POST);
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await?;
    let mut outgoing = upstream
        .client
        .request(parts.method, format!("{}{path}", upstream.base))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" {
            outgoing = outgoing.header(name, value);
        }
    }
    let incoming = outgoing.send().await?;
    if ends {
        upstream.ended(&path, arrived);
    }
    let invocation = path.ends_with("/invocation/next");
    if invocation
        && let Some(id) = incoming
            .headers()
            .get("lambda-runtime-aws-request-id")
            .and_then(|v| v.to_str().ok())
    {
        upstream
            .timing()
            .started
            .insert(id.to_owned(), (function.clone(), Instant::now()));
    }
    let mut response = Response::builder().status(incoming.status().as_u16());
    for (name, value) in incoming.headers() {
        let hop_by_hop = ["transfer-encoding", "connection"].contains(&name.as_str());
        let replaced = invocation && name.as_str() == DEADLINE_HEADER;
        if !(hop_by_hop || replaced) {
            response = response.header(name, value);
        }
    }
    if invocation && let Some(timeout) = upstream.timeouts.get(&function) {
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH)? + *timeout;
        response = response.header(
            DEADLINE_HEADER,
            HeaderValue::from_str(&deadline.as_millis().to_string())?,
        );
    }
    Ok(response.body(Body::from(incoming.bytes().await?))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_are_told_from_the_runtime_api_by_path() {
        assert_eq!(
            invoked_function("/lambda-url/webhook-status/twilio/status"),
            Some("webhook-status")
        );
        assert_eq!(
            invoked_function("/lambda-url/webhook-voice?x=1"),
            Some("webhook-voice")
        );
        assert_eq!(
            invoked_function("/2015-03-31/functions/status-worker/invocations"),
            Some("status-worker")
        );
        assert_eq!(
            invoked_function("/.rt/status-worker/2018-06-01/runtime/invocation/next"),
            None
        );
        assert_eq!(
            invoked_function("/2015-03-31/functions/x/configuration"),
            None
        );
    }
}
