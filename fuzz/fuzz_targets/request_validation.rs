//! Any request the webhook can receive gets one of the contract's answers, without a panic,
//! and nothing is queued unless its signature is the token's. The input is split on NUL into
//! method, content type, signature, query and body.
#![no_main]

use std::sync::Mutex;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use voicehooks::events::Envelope;
use voicehooks::queue::{EventQueue, QueueError};
use voicehooks::secrets::{StaticTokens, TwilioCredentials};
use voicehooks::twilio::signature::compute_signature;
use voicehooks::webhook::{Acknowledger, WebhookRequest};

const TOKEN: &str = "12345678901234567890123456789012";

#[derive(Default)]
struct Recorded(Mutex<Vec<Envelope>>);

impl EventQueue for &Recorded {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.0
            .lock()
            .map_err(|_| QueueError("poisoned".into()))?
            .push(envelope.clone());
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let method = match next().first() {
        Some(b'G') => Method::GET,
        Some(b'P') => Method::PUT,
        _ => Method::POST,
    };
    let content_type = String::from_utf8_lossy(next()).into_owned();
    let signature = String::from_utf8_lossy(next()).into_owned();
    let query = String::from_utf8_lossy(next()).into_owned();
    let body = next();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", &content_type),
        ("x-twilio-signature", &signature),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let queue = Recorded::default();
    let tokens = StaticTokens {
        current: std::sync::Arc::new(TwilioCredentials::new("AC1", TOKEN)),
        previous: None,
    };
    let ack = Acknowledger::new("https://voice.example.com", &queue, tokens);
    let request = WebhookRequest {
        method: &method,
        headers: &headers,
        raw_path: "/twilio/status",
        raw_query: &query,
        body,
    };
    let reply = futures::executor::block_on(ack.call_status(&request));
    let queued = queue.0.lock().map(|q| q.len()).unwrap_or_default();
    if reply.status == StatusCode::NO_CONTENT {
        assert_eq!(queued, 1);
        // Accepted only with the token's own signature (form bodies: over the decoded params).
        let params = voicehooks::twilio::Params::from_form(body).unwrap_or_default();
        let url = request.public_url("https://voice.example.com");
        let json = content_type.to_ascii_lowercase().contains("json");
        assert!(json || compute_signature(TOKEN, &url, params.iter()) == signature);
    } else {
        assert_eq!(queued, 0);
        assert!(reply.status.is_client_error(), "{}", reply.status);
        assert_eq!(reply.body.trim_end().lines().count(), 1);
    }
});
