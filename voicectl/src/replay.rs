//! Sending events again: files (sample events, envelopes saved by `dlq peek --save`) to a
//! webhook URL, signed, or straight onto their queue; and a call's stored events re-applied
//! after a fix.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use voicehooks::calls::Replayed;
use voicehooks::events::{Envelope, EventKind, IDEMPOTENCY_HEADER};
use voicehooks::queue::{EventQueue, SqsEventQueue};
use voicehooks::stack_names::WorkQueue;
use voicehooks::transcribe::JobStateChange;
use voicehooks::twilio::Params;

use crate::connect::Stack;
use crate::simulate::Twilio;

/// One thing a file holds to send.
#[derive(Debug, Clone)]
pub enum Item {
    /// A queue envelope (a `dlq peek --save` file, or a record of an SQS sample batch).
    Envelope(Envelope),
    /// A webhook request as Lambda receives it (the `events/webhook-*` samples).
    Request {
        path: String,
        params: Params,
        idempotency_token: Option<String>,
    },
    /// A Transcribe state change (EventBridge's event, for the transcript queue).
    StateChange(String),
}

/// An item and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub item: Result<Item, String>,
}

/// Reads every file (a folder: every `.json` in it, recursively, in name order).
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Loaded>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut loaded = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for item in parse(&text) {
            loaded.push(Loaded {
                file: file.clone(),
                item,
            });
        }
    }
    Ok(loaded)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "json") {
                collect(&entry, files)?;
            }
        }
    } else {
        files.push(path.to_owned());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpEvent {
    raw_path: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
    #[serde(default)]
    headers: std::collections::HashMap<String, String>,
    request_context: HttpContext,
}

#[derive(Deserialize)]
struct HttpContext {
    http: HttpMethod,
}

#[derive(Deserialize)]
struct HttpMethod {
    method: String,
}

#[derive(Deserialize)]
struct SqsBatch {
    #[serde(rename = "Records")]
    records: Vec<SqsRecord>,
}

#[derive(Deserialize)]
struct SqsRecord {
    body: String,
}

/// What one file holds: one item, or one per record of an SQS batch.
fn parse(text: &str) -> Vec<Result<Item, String>> {
    if let Ok(batch) = serde_json::from_str::<SqsBatch>(text) {
        return batch.records.iter().map(|r| message(&r.body)).collect();
    }
    if let Ok(event) = serde_json::from_str::<HttpEvent>(text) {
        return vec![request(event)];
    }
    vec![message(text)]
}

/// A queue message body: an envelope or a Transcribe state change.
fn message(body: &str) -> Result<Item, String> {
    match Envelope::from_json(body) {
        Ok(envelope) => Ok(Item::Envelope(envelope)),
        Err(e) if JobStateChange::from_event(body).is_none() => Err(e.to_string()),
        Err(_) => Ok(Item::StateChange(body.to_owned())),
    }
}

fn request(event: HttpEvent) -> Result<Item, String> {
    if event.request_context.http.method != "POST" {
        return Err(format!(
            "a {} request; Twilio only POSTs",
            event.request_context.http.method
        ));
    }
    let body = event.body.unwrap_or_default();
    let body = if event.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("body is not base64: {e}"))?
    } else {
        body.into_bytes()
    };
    let params = Params::from_form(&body).map_err(|e| e.to_string())?;
    Ok(Item::Request {
        path: event.raw_path,
        params,
        idempotency_token: event.headers.get(IDEMPOTENCY_HEADER).cloned(),
    })
}

/// What became of one item.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub file: PathBuf,
    /// The URL or queue it went to; `None` when it was not sent.
    pub to: Option<String>,
    /// `sent`, `refused` (the webhook's answer was not 2xx) or `skipped`.
    pub outcome: &'static str,
    pub detail: String,
}

impl Sent {
    fn skipped(file: &Path, why: impl ToString) -> Self {
        Self {
            file: file.to_owned(),
            to: None,
            outcome: "skipped",
            detail: why.to_string(),
        }
    }
}

/// Puts each item on its pipeline's queue, as the webhook would have.
pub async fn to_queues(
    stack: &Stack,
    items: &[Loaded],
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Sent>> {
    let mut urls = std::collections::HashMap::new();
    for pipeline in WorkQueue::ALL {
        urls.insert(
            pipeline,
            stack.queue_url(&stack.names.queue(pipeline)).await?,
        );
    }
    let mut sent = Vec::new();
    for loaded in items {
        progress.inc(1);
        let envelope = match &loaded.item {
            Err(why) => {
                sent.push(Sent::skipped(&loaded.file, why));
                continue;
            }
            Ok(Item::Envelope(envelope)) => envelope.clone(),
            Ok(Item::Request {
                path,
                params,
                idempotency_token,
            }) => {
                let Some(kind) = EventKind::of_callback_path(path) else {
                    sent.push(Sent::skipped(
                        &loaded.file,
                        format!("{path} answers with TwiML; send it to --url"),
                    ));
                    continue;
                };
                match Envelope::from_callback(kind, params, idempotency_token.as_deref()) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        sent.push(Sent::skipped(&loaded.file, e));
                        continue;
                    }
                }
            }
            Ok(Item::StateChange(body)) => {
                let url = &urls[&WorkQueue::Transcript];
                stack
                    .sqs
                    .send_message()
                    .queue_url(url)
                    .message_body(body)
                    .send()
                    .await
                    .map_err(crate::dlq::sqs_error)?;
                sent.push(Sent {
                    file: loaded.file.clone(),
                    to: Some(stack.names.queue(WorkQueue::Transcript)),
                    outcome: "sent",
                    detail: "transcribe.job".into(),
                });
                continue;
            }
        };
        let pipeline = WorkQueue::of(envelope.kind);
        SqsEventQueue::new(stack.sqs.clone(), &urls[&pipeline])
            .send(&envelope)
            .await?;
        sent.push(Sent {
            file: loaded.file.clone(),
            to: Some(stack.names.queue(pipeline)),
            outcome: "sent",
            detail: format!("{} {}", envelope.kind.as_str(), envelope.call_sid),
        });
    }
    Ok(sent)
}

/// Sends each item to its webhook under `base_url`, signed as Twilio would sign it.
pub async fn to_webhooks(
    twilio: &Twilio,
    base_url: &str,
    items: &[Loaded],
    progress: &indicatif::ProgressBar,
) -> Vec<Sent> {
    let base = base_url.trim_end_matches('/');
    let mut sent = Vec::new();
    for loaded in items {
        progress.inc(1);
        let (path, params, token) = match &loaded.item {
            Err(why) => {
                sent.push(Sent::skipped(&loaded.file, why));
                continue;
            }
            Ok(Item::Envelope(e)) => (
                e.kind.webhook_path().to_owned(),
                &e.params,
                Some(e.idempotency_key.as_str()),
            ),
            Ok(Item::Request {
                path,
                params,
                idempotency_token,
            }) => (path.clone(), params, idempotency_token.as_deref()),
            Ok(Item::StateChange(_)) => {
                sent.push(Sent::skipped(
                    &loaded.file,
                    "a Transcribe state change has no webhook; use --queue",
                ));
                continue;
            }
        };
        let url = format!("{base}{path}");
        let Some(target) = twilio.target(&url) else {
            sent.push(Sent::skipped(&loaded.file, format!("no --route for {url}")));
            continue;
        };
        let (response, latency_us) = twilio.post(&target, &url, params, token).await;
        sent.push(match response {
            Ok(r) => Sent {
                file: loaded.file.clone(),
                to: Some(url),
                outcome: if r.status().is_success() {
                    "sent"
                } else {
                    "refused"
                },
                detail: format!("HTTP {} in {:.1} ms", r.status(), latency_us as f64 / 1e3),
            },
            Err(e) => Sent {
                file: loaded.file.clone(),
                to: Some(url),
                outcome: "refused",
                detail: e.to_string(),
            },
        });
    }
    sent
}

/// What re-applying one call's stored events did.
#[derive(Debug, Clone, Serialize)]
pub struct CallReplay {
    pub call_sid: String,
    /// `None`: no such call (or, dry run, not run).
    pub replayed: Option<Replayed>,
    pub error: Option<String>,
}

/// Re-applies the stored events of each call, one call after another.
pub async fn calls(
    stack: &Stack,
    call_sids: &[String],
    progress: &indicatif::ProgressBar,
) -> Vec<CallReplay> {
    let store = stack.calls();
    let mut results = Vec::new();
    for call_sid in call_sids {
        progress.set_message(call_sid.clone());
        let result = store.replay_call(call_sid).await;
        progress.inc(1);
        results.push(match result {
            Ok(replayed) => CallReplay {
                call_sid: call_sid.clone(),
                error: replayed.is_none().then(|| "no such call".to_owned()),
                replayed,
            },
            Err(e) => CallReplay {
                call_sid: call_sid.clone(),
                replayed: None,
                error: Some(e.to_string()),
            },
        });
    }
    results
}
