//! What the webhook tests share: an in-memory queue, static tokens, and a signed request.

#![allow(dead_code)] // each test file uses its own part

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use voicehooks::events::Envelope;
use voicehooks::queue::{EventQueue, QueueError};
use voicehooks::secrets::{AuthTokens, SecretsError, StaticTokens, TwilioCredentials};
use voicehooks::spill::{SpillError, SpillStore, UnverifiedRequest};
use voicehooks::twilio::Params;
use voicehooks::twilio::signature::compute_signature;
use voicehooks::webhook::{Acknowledger, Reply, WebhookRequest};

pub const BASE: &str = "https://voice.example.com";
pub const TOKEN: &str = "12345678901234567890123456789012";
pub const OLD_TOKEN: &str = "abcdefabcdefabcdefabcdefabcdefab";
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";

#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<Envelope>>,
    /// Refuses every send while set.
    pub down: AtomicBool,
    /// How long each send takes.
    pub latency: Duration,
    /// Sends asked for, refused or not.
    pub attempts: AtomicU32,
}

impl EventQueue for MemoryQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError("connection refused".into()));
        }
        self.sent.lock().unwrap().push(envelope.clone());
        Ok(())
    }
}

impl MemoryQueue {
    pub fn sent(&self) -> Vec<Envelope> {
        self.sent.lock().unwrap().clone()
    }
}

/// The spill, in memory: what `S3Spill` stores, or refuses when `down`.
#[derive(Default)]
pub struct MemorySpill {
    pub spilled: Mutex<Vec<Envelope>>,
    pub unverified: Mutex<Vec<UnverifiedRequest>>,
    /// Refuses every put while set.
    pub down: AtomicBool,
}

impl SpillStore for MemorySpill {
    async fn put(&self, envelope: &Envelope) -> Result<(), SpillError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SpillError("AccessDenied".into()));
        }
        self.spilled.lock().unwrap().push(envelope.clone());
        Ok(())
    }

    async fn put_unverified(&self, request: &UnverifiedRequest) -> Result<(), SpillError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SpillError("AccessDenied".into()));
        }
        self.unverified.lock().unwrap().push(request.clone());
        Ok(())
    }
}

impl MemorySpill {
    pub fn spilled(&self) -> Vec<Envelope> {
        self.spilled.lock().unwrap().clone()
    }
}

/// Secrets Manager unreachable.
pub struct NoTokens;

impl AuthTokens for NoTokens {
    async fn current(&self) -> Result<Arc<TwilioCredentials>, SecretsError> {
        Err(SecretsError::Unavailable("timeout".into()))
    }
    async fn previous(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        Err(SecretsError::Unavailable("timeout".into()))
    }
    async fn refresh_current(&self) -> Result<Option<Arc<TwilioCredentials>>, SecretsError> {
        Err(SecretsError::Unavailable("timeout".into()))
    }
}

pub fn credentials(token: &str) -> Arc<TwilioCredentials> {
    Arc::new(TwilioCredentials::new(ACCOUNT_SID, token))
}

pub fn tokens(previous: Option<&str>) -> StaticTokens {
    StaticTokens {
        current: credentials(TOKEN),
        previous: previous.map(credentials),
    }
}

pub fn acknowledger(
    queue: &Arc<MemoryQueue>,
    previous: Option<&str>,
) -> Acknowledger<Arc<MemoryQueue>, StaticTokens> {
    Acknowledger::new(BASE, queue.clone(), tokens(previous))
}

/// A webhook request as Twilio sends it, signed for `BASE + path (+ ?query)`.
pub struct Call {
    pub method: Method,
    pub headers: HeaderMap,
    pub path: &'static str,
    pub query: String,
    pub body: Vec<u8>,
}

impl Call {
    pub fn form(path: &'static str, params: &Params) -> Self {
        Self::form_with_query(path, "", params)
    }

    pub fn form_with_query(path: &'static str, query: &str, params: &Params) -> Self {
        let mut call = Self {
            method: Method::POST,
            headers: HeaderMap::new(),
            path,
            query: query.to_owned(),
            body: params.to_form().into_bytes(),
        };
        call.header("content-type", "application/x-www-form-urlencoded");
        let url = call.url();
        call.sign_with(TOKEN, &url, params);
        call
    }

    pub fn url(&self) -> String {
        if self.query.is_empty() {
            format!("{BASE}{}", self.path)
        } else {
            format!("{BASE}{}?{}", self.path, self.query)
        }
    }

    pub fn header(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    pub fn sign_with(&mut self, token: &str, url: &str, params: &Params) -> &mut Self {
        let signature = compute_signature(token, url, params.iter());
        self.header("x-twilio-signature", &signature)
    }

    pub fn request(&self) -> WebhookRequest<'_> {
        WebhookRequest {
            method: &self.method,
            headers: &self.headers,
            raw_path: self.path,
            raw_query: &self.query,
            body: &self.body,
        }
    }

    /// Sends it to the status webhook.
    pub async fn send(&self, ack: &Acknowledger<Arc<MemoryQueue>, StaticTokens>) -> Reply {
        ack.call_status(&self.request()).await
    }
}
