//! `make bench`: the compute a webhook spends per request, without I/O. Goals (issue 7):
//! under 2 µs each on a developer machine.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shared::events::Envelope;
use shared::flows::{Flows, Step, Urls};
use shared::twilio::signature::{compute_signature, validate_form};
use shared::twilio::{Params, StatusCallback};

const BASE: &str = "https://hooks.example.com";
const TOKEN: &str = "12345678901234567890123456789012";

fn new_call(to: &str) -> Params {
    [
        ("AccountSid", "AC10ca1000000000000000000000000001"),
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

fn twiml(c: &mut Criterion) {
    let flows = Flows::built_in().expect("the shipped flows are valid");
    let urls = Urls::new(BASE);
    let enter = Step::Enter { flow: None };
    let mut group = c.benchmark_group("twiml render per response (goal < 2 us)");
    for (name, to) in [
        ("forward (sales)", "+14155550101"),
        ("menu (main-menu)", "+14155550100"),
    ] {
        let params = new_call(to);
        group.bench_function(name, |b| {
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
    let params: Params = new_call("+14155550100")
        .iter()
        .chain([("Digits", "1")])
        .collect();
    group.bench_function("menu answer -> forward", |b| {
        b.iter(|| {
            flows
                .render(black_box(&chose), black_box(&params), &urls)
                .twiml
                .to_xml()
        })
    });
    group.finish();
}

fn status_callback(c: &mut Criterion) {
    let params: Params = new_call("+14155550100")
        .iter()
        .map(|(k, v)| (k, if k == "CallStatus" { "completed" } else { v }))
        .chain([
            ("SequenceNumber", "3"),
            ("CallDuration", "42"),
            ("Timestamp", "Mon, 23 Nov 2026 10:00:00 +0000"),
        ])
        .collect();
    let url = format!("{BASE}/twilio/status");
    let body = params.to_form().into_bytes();
    let signature = compute_signature(TOKEN, &url, params.iter());
    c.bench_function(
        "status callback: decode + signature + envelope (goal < 2 us)",
        |b| {
            b.iter(|| {
                let params = Params::from_form(black_box(&body)).expect("form");
                assert!(validate_form(TOKEN, &url, params.iter(), &signature));
                let callback = StatusCallback::parse(&params).expect("callback");
                Envelope::call_status(&callback, &params, Some("idem")).to_json()
            })
        },
    );
}

criterion_group!(benches, twiml, status_callback);
criterion_main!(benches);
