//! Cold starts, measured the way Lambda sees them: a function binary exec'd against a small
//! stand-in of the Lambda Runtime API, which serves it one event. Ready is the first
//! `GET …/invocation/next` (configuration read, SDK clients built); the first response is
//! its `POST …/response` (or `…/error`) for that event, with every AWS call it needed.
//! API: <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::functions::{FunctionSpec, lambda_command};
use crate::process::ManagedProcess;

/// One cold start.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    /// Exec to the first `GET /next`.
    pub ready: Duration,
    /// Exec to the answer for the first event.
    pub first_response: Duration,
    /// Whether the answer was a response (not an invocation or init error).
    pub ok: bool,
}

#[derive(Default)]
struct Seen {
    ready: Option<Instant>,
    answered: Option<(Instant, bool)>,
}

struct RuntimeApi {
    event: Bytes,
    seen: Mutex<Seen>,
    answered: Notify,
}

const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";

/// The Runtime API's three calls a function makes on its first event; the second
/// `GET /next` never answers (the instance would freeze there; it is killed instead).
async fn runtime_api(State(api): State<Arc<RuntimeApi>>, method: Method, uri: Uri) -> Response {
    let now = Instant::now();
    let path = uri.path();
    let first_next = {
        let mut seen = api.seen.lock().unwrap_or_else(|e| e.into_inner());
        if method == Method::GET && path.ends_with("/runtime/invocation/next") {
            let first = seen.ready.is_none();
            seen.ready.get_or_insert(now);
            Some(first)
        } else {
            if method == Method::POST && seen.answered.is_none() {
                if path.ends_with("/response") {
                    seen.answered = Some((now, true));
                } else if path.ends_with("/error") {
                    seen.answered = Some((now, false));
                }
                api.answered.notify_one();
            }
            None
        }
    };
    match first_next {
        Some(true) => (StatusCode::OK, invocation_headers(), api.event.clone()).into_response(),
        Some(false) => std::future::pending().await,
        None => StatusCode::ACCEPTED.into_response(),
    }
}

fn invocation_headers() -> HeaderMap {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        + 30_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    headers
}

/// Starts `binary` with `spec`'s environment against a fresh Runtime API stand-in that
/// serves `event`, and times it. The process is killed once it has answered (or after 30 s).
pub async fn measure(
    binary: &Path,
    spec: &FunctionSpec,
    event: Vec<u8>,
    log: &Path,
) -> anyhow::Result<ColdStart> {
    let api = Arc::new(RuntimeApi {
        event: event.into(),
        seen: Mutex::default(),
        answered: Notify::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new().fallback(runtime_api).with_state(api.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let command = lambda_command(binary, &format!("http://{address}"), spec);
    let exec = Instant::now();
    let mut process = ManagedProcess::spawn(&spec.name, command, log)?;
    let answered = tokio::time::timeout(Duration::from_secs(30), api.answered.notified()).await;
    process.kill();
    server.abort();
    answered
        .map_err(|_| anyhow::anyhow!("{} did not answer its first event in 30 s", spec.name))?;
    let seen = api.seen.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(ready), Some((answered, ok))) = (seen.ready, seen.answered) else {
        anyhow::bail!("{} answered without asking for an event", spec.name);
    };
    Ok(ColdStart {
        ready: ready - exec,
        first_response: answered - exec,
        ok,
    })
}
