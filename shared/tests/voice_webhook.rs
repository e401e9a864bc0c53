//! The voice webhook: signed requests always get 200 with valid TwiML, whatever fails
//! behind it; only requests that cannot be shown to come from Twilio are refused.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use voicehooks::events::EventKind;
use voicehooks::flows::Flows;
use voicehooks::secrets::AuthTokens;
use voicehooks::twilio::{Params, twiml};
use voicehooks::voice::{UNREADABLE_FLOWS_MESSAGE, VoiceWebhook};
use voicehooks::webhook::{Acknowledger, Reply};

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";

fn voice<T: AuthTokens>(queue: &Arc<MemoryQueue>, tokens: T) -> VoiceWebhook<Arc<MemoryQueue>, T> {
    VoiceWebhook::new(
        Acknowledger::new(BASE, queue.clone(), tokens),
        Flows::built_in(),
        BASE,
        Duration::from_millis(200),
    )
}

fn new_call(to: &str) -> Params {
    [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+16285550111"),
        ("To", to),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .collect()
}

fn with(params: &Params, extra: &[(&str, &str)]) -> Params {
    params.iter().chain(extra.iter().copied()).collect()
}

/// A 200 TwiML reply that Twilio would accept.
fn assert_twiml(reply: &Reply) -> &str {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.content_type, Some("text/xml; charset=utf-8"));
    twiml::check(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body));
    &reply.body
}

#[tokio::test]
async fn a_new_call_gets_its_flow_and_records_call_started() {
    let queue = Arc::new(MemoryQueue::default());
    let params = new_call("+14155550100");
    let reply = voice(&queue, tokens(None))
        .answer(&Call::form("/twilio/voice", &params).request())
        .await;
    let xml = assert_twiml(&reply);
    assert!(xml.contains("<Gather input=\"dtmf speech\""), "{xml}");
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, EventKind::CallStarted);
    assert_eq!(sent[0].flow.as_deref(), Some("main-menu"));
    assert_eq!(sent[0].idempotency_key, format!("{CALL_SID}:call.started"));
    assert_eq!(sent[0].params, params);
}

#[tokio::test]
async fn action_routes_are_signed_with_their_query_and_enqueue_nothing() {
    let queue = Arc::new(MemoryQueue::default());
    let webhook = voice(&queue, tokens(None));
    let params = with(&new_call("+14155550100"), &[("Digits", "1")]);
    let query = "flow=main-menu&no_input=0&invalid=0";
    let call = Call::form_with_query("/twilio/voice/menu", query, &params);
    let xml = assert_twiml(&webhook.answer(&call.request()).await).to_owned();
    assert!(xml.contains("Connecting you to sales."), "{xml}");
    assert!(queue.sent().is_empty(), "only a new call is an event");

    // The same request signed without its query is not what Twilio signed.
    let mut unsigned_query = Call::form("/twilio/voice/menu", &params);
    unsigned_query.query = query.into();
    assert_eq!(
        webhook.answer(&unsigned_query.request()).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn requests_not_shown_to_be_from_twilio_are_refused_as_on_every_webhook() {
    let queue = Arc::new(MemoryQueue::default());
    let webhook = voice(&queue, tokens(None));
    let params = new_call("+14155550100");

    let mut forged = Call::form("/twilio/voice", &params);
    forged.sign_with("not-the-token", &forged.url(), &params);
    let mut unsigned = Call::form("/twilio/voice", &params);
    unsigned.headers.remove("x-twilio-signature");
    let mut get = Call::form("/twilio/voice", &params);
    get.method = Method::GET;
    let mut garbage = Call::form("/twilio/voice", &params);
    garbage.body = b"CallSid=%zz".to_vec();
    let mut xml_body = Call::form("/twilio/voice", &params);
    xml_body.header("content-type", "text/xml");

    for (call, status) in [
        (forged, StatusCode::FORBIDDEN),
        (unsigned, StatusCode::FORBIDDEN),
        (get, StatusCode::METHOD_NOT_ALLOWED),
        (garbage, StatusCode::BAD_REQUEST),
        (xml_body, StatusCode::BAD_REQUEST),
    ] {
        let reply = webhook.answer(&call.request()).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.body.lines().count(), 1, "one-line reason");
    }
    assert!(queue.sent().is_empty());
}

#[tokio::test]
async fn a_queue_that_is_down_still_lets_the_caller_through() {
    let queue = Arc::new(MemoryQueue {
        down: true.into(),
        ..Default::default()
    });
    let down = voice(&queue, tokens(None));
    let up = voice(&Arc::new(MemoryQueue::default()), tokens(None));
    let call = Call::form("/twilio/voice", &new_call("+14155550101"));
    let reply = down.answer(&call.request()).await;
    assert_twiml(&reply);
    assert_eq!(
        reply,
        up.answer(&call.request()).await,
        "same TwiML either way"
    );
}

#[tokio::test]
async fn a_slow_queue_costs_the_caller_no_more_than_the_deadline() {
    let queue = Arc::new(MemoryQueue {
        latency: Duration::from_secs(30),
        ..Default::default()
    });
    let webhook = voice(&queue, tokens(None));
    let call = Call::form("/twilio/voice", &new_call("+14155550103"));
    let asked = Instant::now();
    let reply = webhook.answer(&call.request()).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "waited for the queue"
    );
    assert!(assert_twiml(&reply).contains("<Record "));
    assert!(queue.sent().is_empty());
}

#[tokio::test]
async fn stale_or_unknown_routes_get_the_apology_and_the_fallback() {
    let queue = Arc::new(MemoryQueue::default());
    let webhook = voice(&queue, tokens(None));
    let params = new_call("+14155550100");
    for (path, query) in [
        ("/twilio/voice", "flow=renamed-last-week"),
        ("/twilio/voice/menu", "flow=main-menu&invalid=lots"),
        ("/twilio/voice/elsewhere", ""),
    ] {
        let call = Call::form_with_query(path, query, &params);
        let reply = webhook.answer(&call.request()).await;
        let xml = assert_twiml(&reply);
        assert!(
            xml.contains("Sorry, we can&apos;t connect your call right now."),
            "{path}?{query}: {xml}"
        );
        assert!(xml.contains("<Record "), "{xml}");
    }
    // The unknown flow still marks the call as started, by the flow that took it.
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].flow.as_deref(), Some("voicemail"));
}

#[tokio::test]
async fn unreadable_flows_still_answer_with_an_apology() {
    let queue = Arc::new(MemoryQueue::default());
    let webhook = VoiceWebhook::new(
        Acknowledger::new(BASE, queue.clone(), tokens(None)),
        Flows::parse("[routes]\n", "broken.toml"),
        BASE,
        Duration::from_millis(200),
    );
    let reply = webhook
        .answer(&Call::form("/twilio/voice", &new_call("+14155550100")).request())
        .await;
    let xml = assert_twiml(&reply);
    assert!(
        xml.contains(&UNREADABLE_FLOWS_MESSAGE.replace('\'', "&apos;")),
        "{xml}"
    );
    assert!(xml.ends_with("<Hangup/></Response>"), "{xml}");
}

#[tokio::test]
async fn a_request_without_call_sids_is_answered_but_not_queued() {
    let queue = Arc::new(MemoryQueue::default());
    let params: Params = [("To", "+14155550103"), ("From", "+16285550111")]
        .into_iter()
        .collect();
    let reply = voice(&queue, tokens(None))
        .answer(&Call::form("/twilio/voice", &params).request())
        .await;
    assert!(assert_twiml(&reply).contains("<Record "));
    assert!(queue.sent().is_empty());
}

#[tokio::test]
async fn without_the_token_the_caller_gets_the_apology_and_nothing_is_queued() {
    let queue = Arc::new(MemoryQueue::default());
    let reply = voice(&queue, NoTokens)
        .answer(&Call::form("/twilio/voice", &new_call("+14155550101")).request())
        .await;
    let xml = assert_twiml(&reply);
    assert!(
        xml.contains(&UNREADABLE_FLOWS_MESSAGE.replace('\'', "&apos;")),
        "{xml}"
    );
    // An unverified request learns nothing: no flow runs, no number or client is dialled,
    // no recording or callback URL is handed out.
    for revealing in [
        "Connecting you to sales",
        "<Dial",
        "<Record",
        "<Gather",
        "http",
    ] {
        assert!(!xml.contains(revealing), "{revealing} in {xml}");
    }
    assert!(xml.ends_with("<Hangup/></Response>"), "{xml}");
    assert!(queue.sent().is_empty());
}
