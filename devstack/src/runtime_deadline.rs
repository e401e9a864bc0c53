//! The Lambda Runtime API as Lambda serves it, deadline included.
//!
//! cargo-lambda's runtime answers every `GET …/invocation/next` with
//! `Lambda-Runtime-Deadline-Ms: 600000` (`crates/cargo-lambda-watch/src/runtime/
//! functions_router.rs`, 1.9.2): ten minutes after 1970, a deadline already past. Lambda sends
//! the invocation's real end (start plus the function's timeout), and our workers settle
//! before it. This proxy sits between the functions and cargo-lambda and sets the header as
//! Lambda would, from each function's timeout; everything else passes through unchanged.
//!
//! It also times each invocation as Lambda bills it: from the event handed over (`next`
//! answered) to the function's `…/response` or `…/error` for it ("Lambda pricing": duration
//! is from when the code begins executing until it returns), for `make bench`'s GB-seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
}

/// Invocations under way (request id → function, start) and the durations of those done.
#[derive(Default)]
struct Timing {
    started: HashMap<String, (String, Instant)>,
    durations: HashMap<String, Vec<Duration>>,
}

/// The proxy; stopped when dropped.
pub struct RuntimeProxy {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    upstream: Arc<Upstream>,
}

impl RuntimeProxy {
    /// Proxies `upstream` (cargo-lambda's Lambda APIs), with each function's timeout.
    pub async fn start(
        upstream: &str,
        timeouts: HashMap<String, Duration>,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            timeouts,
            // No timeout: `next` is a long poll that waits for the next invocation.
            client: reqwest::Client::builder().no_proxy().build()?,
            timing: Mutex::default(),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let (addr, stop) = crate::task::serve(app).await?;
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
}

impl Drop for RuntimeProxy {
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

async fn relay(upstream: &Upstream, request: Request) -> anyhow::Result<Response> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
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
