//! `make bench`: the compute a webhook spends per request, without I/O. Goal: under
//! 2 µs each on a developer machine.
//!
//! A status callback is measured twice: form decode + signature check + envelope encode
//! (the measure docs/PERFORMANCE.md reports), and the webhook's whole acknowledge path (method and content-type
//! checks, the same, metrics and the log line's fields) with the two edges in memory: tokens
//! already cached, a queue that only encodes. The signature check and
//! the TwiML documents are also written to `target/bench/peer-inputs.json`, so that
//! `devstack bench` runs twilio-node on exactly the same inputs.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt as _;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;
use voicehooks::events::{Envelope, IDEMPOTENCY_HEADER};
use voicehooks::flows::{Flows, Step, Urls};
use voicehooks::queue::{EventQueue, QueueError};
use voicehooks::secrets::{StaticTokens, TwilioCredentials};
use voicehooks::twilio::signature::{SIGNATURE_HEADER, compute_signature, validate_form};
use voicehooks::twilio::{Params, StatusCallback};
use voicehooks::webhook::{Acknowledger, WebhookRequest};

const BASE: &str = "https://hooks.example.com";
const TOKEN: &str = "12345678901234567890123456789012";
const ACCOUNT: &str = "AC10ca1000000000000000000000000001";

fn new_call(to: &str) -> Params {
    [
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CAf0e1d2c3b4a5968778695a4b3c2d1e0f"),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", "+16285550111"),
        ("Direction", "inbound"),
        ("From", "+16285550111"),
        ("To", to),
    ]
    .into_iter()
    .collect()
}

/// A typical completed-call status callback, as Twilio sends it.
fn status_params() -> Params {
    new_call("+14155550100")
        .iter()
        .map(|(k, v)| (k, if k == "CallStatus" { "completed" } else { v }))
        .chain([
            ("SequenceNumber", "3"),
            ("CallDuration", "42"),
            ("Timestamp", "Mon, 23 Nov 2026 10:00:00 +0000"),
        ])
        .collect()
}

/// The queue edge without I/O: encodes the message body as `SqsEventQueue` does.
struct EncodeOnly;

impl EventQueue for EncodeOnly {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        black_box(envelope.to_json());
        Ok(())
    }
}

fn ingress(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingress");

    let params = status_params();
    let url = format!("{BASE}/twilio/status");
    let body = params.to_form().into_bytes();
    let signature = compute_signature(TOKEN, &url, params.iter());
    let acknowledger = Acknowledger::new(
        BASE,
        EncodeOnly,
        StaticTokens {
            current: Arc::new(TwilioCredentials::new(ACCOUNT, TOKEN)),
            previous: None,
        },
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    // Twilio sends the same token on every retry of one webhook.
    headers.insert(
        IDEMPOTENCY_HEADER,
        HeaderValue::from_static("idem-6bd3c4a1-7e0f-4b52-9c1d-2f8a5e7b3c90"),
    );
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&signature).expect("base64 is a header value"),
    );
    let request = WebhookRequest {
        method: &Method::POST,
        headers: &headers,
        raw_path: "/twilio/status",
        raw_query: "",
        body: &body,
    };
    // The reported measure: form decode + signature check + envelope encode.
    group.bench_function("status_callback", |b| {
        b.iter(|| {
            let params = Params::from_form(black_box(&body)).expect("form");
            assert!(validate_form(TOKEN, &url, params.iter(), &signature));
            let callback = StatusCallback::parse(&params).expect("callback");
            Envelope::call_status(&callback, &params, Some("idem")).to_json()
        })
    });
    // And everything the handler does around it, but the I/O. The durable write is bounded by
    // `tokio::time::timeout`, which needs a runtime's timer to exist even when the queue
    // answers at once (as here, so the future is still polled once, without a scheduler).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let _timer = runtime.enter();
    group.bench_function("acknowledge", |b| {
        b.iter(|| {
            let reply = acknowledger
                .call_status(black_box(&request))
                .now_or_never()
                .expect("no I/O, so ready at once");
            assert_eq!(reply.status, 204);
        })
    });
    group.bench_function("signature_check", |b| {
        b.iter(|| validate_form(TOKEN, &url, black_box(&params).iter(), &signature))
    });

    let flows = Flows::built_in().expect("the shipped flows are valid");
    let urls = Urls::new(BASE);
    let enter = Step::Enter { flow: None };
    let mut documents = serde_json::Map::new();
    for (id, to) in [
        ("twiml_forward", "+14155550101"),
        ("twiml_menu", "+14155550100"),
    ] {
        let params = new_call(to);
        let xml = flows.render(&enter, &params, &urls).twiml.to_xml();
        documents.insert(id.into(), json!({"tree": tree(&xml), "xml": xml}));
        group.bench_function(id, |b| {
            b.iter(|| {
                flows
                    .render(black_box(&enter), black_box(&params), &urls)
                    .twiml
                    .to_xml()
            })
        });
    }
    let chose = Step::Menu {
        flow: "main-menu".into(),
        no_input: 0,
        invalid: 0,
    };
    let answer: Params = new_call("+14155550100")
        .iter()
        .chain([("Digits", "1")])
        .collect();
    group.bench_function("twiml_menu_answer", |b| {
        b.iter(|| {
            flows
                .render(black_box(&chose), black_box(&answer), &urls)
                .twiml
                .to_xml()
        })
    });
    group.finish();

    write_peer_inputs(&json!({
        "auth_token": TOKEN,
        "url": url,
        "params": params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect::<serde_json::Map<_, _>>(),
        "signature": signature,
        "twiml": documents,
    }));
}

/// A TwiML document as the calls twilio-node's `VoiceResponse` needs to build it again: each
/// element's name, attributes in order, text and children.
fn tree(xml: &str) -> serde_json::Value {
    fn element(node: roxmltree::Node<'_, '_>) -> serde_json::Value {
        let attributes: Vec<_> = node
            .attributes()
            .map(|a| json!([a.name(), a.value()]))
            .collect();
        let children: Vec<_> = node
            .children()
            .filter(|n| n.is_element())
            .map(element)
            .collect();
        let text: String = node
            .children()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect();
        json!({"name": node.tag_name().name(), "attributes": attributes, "text": text, "children": children})
    }
    element(
        roxmltree::Document::parse(xml)
            .expect("our TwiML parses")
            .root_element(),
    )
}

/// Where `devstack bench` finds the inputs for twilio-node.
fn write_peer_inputs(inputs: &serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(
        dir.join("peer-inputs.json"),
        serde_json::to_vec_pretty(inputs).expect("JSON"),
    )
    .expect("peer inputs written");
}

criterion_group!(benches, ingress);
criterion_main!(benches);
