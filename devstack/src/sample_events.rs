//! The sample events under `events/`, generated so their signatures are always valid for
//! the documented local token and public URL. `devstack events` rewrites them;
//! `tests/events.rs` checks the committed files are current and that every one gets the
//! answer its name promises from the real function.

use base64::Engine as _;
use serde_json::{Value, json};
use voicehooks::config::local;
use voicehooks::events::{Envelope, EventKind};
use voicehooks::twilio::signature::compute_signature;
use voicehooks::twilio::{
    CallStatus, Params, RecordingCallback, StatusCallback, TranscriptionCallback,
};

/// A sample event: its path under `events/` and its JSON.
pub struct SampleEvent {
    pub path: String,
    pub json: Value,
}

const CALL_SID: &str = "CAe1a2b3c4d5e6f708192a3b4c5d6e7f80";
/// The unanswered endings (busy, no-answer, failed, canceled) each belong to a call of their
/// own: one call ends once, so the samples replayed together leave `CALL_SID` `completed`.
const UNANSWERED_CALL_SID: &str = "CAe1a2b3c4d5e6f708192a3b4c5d6e7f8";

fn call_sid(status: CallStatus) -> String {
    match status {
        CallStatus::Busy => format!("{UNANSWERED_CALL_SID}1"),
        CallStatus::NoAnswer => format!("{UNANSWERED_CALL_SID}2"),
        CallStatus::Failed => format!("{UNANSWERED_CALL_SID}3"),
        CallStatus::Canceled => format!("{UNANSWERED_CALL_SID}4"),
        _ => CALL_SID.into(),
    }
}
const TIMESTAMP: &str = "Sun, 22 Nov 2026 10:00:00 +0000";

fn status_params(status: CallStatus, seq: u32) -> Params {
    let mut params: Vec<(&str, String)> = vec![
        ("Called", "+16285550123".into()),
        ("ToState", "CA".into()),
        ("CallerCountry", "US".into()),
        ("Direction", "outbound-api".into()),
        ("Timestamp", TIMESTAMP.into()),
        ("CallbackSource", "call-progress-events".into()),
        ("SequenceNumber", seq.to_string()),
        ("CallSid", call_sid(status)),
        ("To", "+16285550123".into()),
        ("ToCountry", "US".into()),
        ("ApiVersion", "2010-04-01".into()),
        ("CallStatus", status.as_str().into()),
        ("From", "+14155550100".into()),
        ("AccountSid", local::ACCOUNT_SID.into()),
        ("Caller", "+14155550100".into()),
    ];
    if status == CallStatus::Completed {
        params.push(("CallDuration", "42".into()));
        params.push(("Duration", "1".into()));
    }
    params.into_iter().collect()
}

/// An HTTP API (payload format 2.0) request as API Gateway hands it to the function.
pub fn http_api_request(
    method: &str,
    route: &str,
    query: &str,
    params: &Params,
    signature: Option<&str>,
    idempotency_token: &str,
) -> Value {
    let body = params.to_form();
    let mut headers = json!({
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "content-length": body.len().to_string(),
        "host": local::PUBLIC_BASE_URL.trim_start_matches("https://"),
        "i-twilio-idempotency-token": idempotency_token,
        "user-agent": "TwilioProxy/1.1",
        "x-forwarded-proto": "https",
    });
    if let Some(signature) = signature {
        headers["x-twilio-signature"] = json!(signature);
    }
    json!({
        "version": "2.0",
        "routeKey": format!("ANY {route}"),
        "rawPath": route,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": local::PUBLIC_BASE_URL.trim_start_matches("https://"),
            "domainPrefix": "hooks",
            "http": { "method": method, "path": route, "protocol": "HTTP/1.1", "sourceIp": "54.172.60.1", "userAgent": "TwilioProxy/1.1" },
            "requestId": format!("req-{idempotency_token}"),
            "routeKey": format!("ANY {route}"),
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_341_600_000u64
        },
        // HTTP APIs base64-encode form bodies.
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true
    })
}

fn signed_status_request(status: CallStatus, seq: u32) -> Value {
    let params = status_params(status, seq);
    let url = format!("{}/twilio/status", local::PUBLIC_BASE_URL);
    let signature = compute_signature(local::AUTH_TOKEN, &url, params.iter());
    http_api_request(
        "POST",
        "/twilio/status",
        "",
        &params,
        Some(&signature),
        &format!("sample-{}", status.as_str()),
    )
}

fn envelope(status: CallStatus, seq: u32) -> Envelope {
    let params = status_params(status, seq);
    let callback = StatusCallback::parse(&params).expect("sample params are a status callback");
    let mut envelope = Envelope::call_status(
        &callback,
        &params,
        Some(&format!("sample-{}", status.as_str())),
    );
    envelope.received_at = "2026-11-22T10:00:00.000Z".into();
    envelope
}

fn sqs_record(id: &str, body: String) -> Value {
    sqs_record_from(id, body, "status")
}

fn sqs_record_from(id: &str, body: String, queue: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": { "ApproximateReceiveCount": "1", "SentTimestamp": "1795341600000", "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795341600001" },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{}-{queue}", local::STACK_NAME),
        "awsRegion": "us-east-1"
    })
}

const VOICE_CALL_SID: &str = "CAf0e1d2c3b4a5968778695a4b3c2d1e0f";

/// The params Twilio posts to the voice URL for a call from `from` to `to`.
fn voice_params(from: &str, to: &str, extra: &[(&str, &str)]) -> Params {
    [
        ("AccountSid", local::ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", VOICE_CALL_SID),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", from),
        // Softphone calls through a TwiML App are inbound to Twilio too.
        ("Direction", "inbound"),
        ("From", from),
        ("To", to),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect()
}

fn signed_voice_request(route: &str, query: &str, params: &Params, name: &str) -> Value {
    let mut url = format!("{}{route}", local::PUBLIC_BASE_URL);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let signature = compute_signature(local::AUTH_TOKEN, &url, params.iter());
    http_api_request(
        "POST",
        route,
        query,
        params,
        Some(&signature),
        &format!("sample-voice-{name}"),
    )
}

/// The voice webhook's samples: (name, route, query, params). The name says what the
/// answer holds; `tests/events.rs` checks it.
fn voice_samples() -> Vec<(&'static str, &'static str, &'static str, Params)> {
    let caller = "+16285550111";
    vec![
        (
            "new-call-main-menu",
            "/twilio/voice",
            "",
            voice_params(caller, "+14155550100", &[]),
        ),
        (
            "new-call-sales-forward",
            "/twilio/voice",
            "",
            voice_params(caller, "+14155550101", &[]),
        ),
        (
            "new-call-standup-conference",
            "/twilio/voice",
            "",
            voice_params(caller, "+14155550102", &[]),
        ),
        (
            "new-call-voicemail",
            "/twilio/voice",
            "",
            voice_params(caller, "+14155550103", &[]),
        ),
        (
            "softphone-outbound",
            "/twilio/voice",
            "",
            voice_params("client:alice", "+16285550199", &[]),
        ),
        (
            "menu-pressed-1-sales",
            "/twilio/voice/menu",
            "flow=main-menu&no_input=0&invalid=0",
            voice_params(
                caller,
                "+14155550100",
                &[("Digits", "1"), ("FinishedOnKey", "")],
            ),
        ),
        (
            "menu-no-input-retry",
            "/twilio/voice/menu",
            "flow=main-menu&no_input=0&invalid=0",
            voice_params(caller, "+14155550100", &[]),
        ),
        (
            "dial-busy-voicemail",
            "/twilio/voice/dial",
            "flow=sales",
            voice_params(
                caller,
                "+14155550101",
                &[
                    ("DialCallStatus", "busy"),
                    ("DialCallSid", "CA00000000000000000000000000000b05"),
                ],
            ),
        ),
        (
            "recorded-goodbye",
            "/twilio/voice/recorded",
            "flow=voicemail",
            voice_params(
                caller,
                "+14155550103",
                &[
                    ("RecordingSid", "RE0000000000000000000000000000000a"),
                    ("RecordingDuration", "12"),
                    ("Digits", "#"),
                ],
            ),
        ),
    ]
}

/// The sample standup room (`tests/events.rs` reads it back).
pub const CONFERENCE_SID: &str = "CF7d6c5b4a39281706f5e4d3c2b1a09f8e";

/// A conference callback of the sample room: `VOICE_CALL_SID` alone in `daily-standup`.
fn conference_params(event: &str, seq: u32) -> Params {
    let seq = seq.to_string();
    let mut params = vec![
        ("AccountSid", local::ACCOUNT_SID),
        ("ConferenceSid", CONFERENCE_SID),
        ("FriendlyName", "daily-standup"),
        ("StatusCallbackEvent", event),
        ("SequenceNumber", seq.as_str()),
        ("Timestamp", TIMESTAMP),
    ];
    if event.starts_with("participant-") {
        params.extend([
            ("CallSid", VOICE_CALL_SID),
            ("Muted", "false"),
            ("Hold", "false"),
            ("Coaching", "false"),
            ("EndConferenceOnExit", "false"),
            ("StartConferenceOnEnter", "true"),
        ]);
    }
    if event == "participant-leave" {
        params.extend([
            ("ReasonParticipantLeft", "participant_hung_up"),
            ("ParticipantCallStatus", "completed"),
        ]);
    }
    if event == "conference-end" {
        params.extend([
            ("ReasonConferenceEnded", "last-participant-left"),
            ("CallSidEndingConference", VOICE_CALL_SID),
        ]);
    }
    params.into_iter().collect()
}

/// The sample room's events: the webhook's requests, and the worker's batch with them out
/// of order (a room is folded in `SequenceNumber` order whatever the arrival order).
fn conference_samples() -> Vec<SampleEvent> {
    let events = [
        ("participant-join", 1),
        ("conference-start", 2),
        ("participant-leave", 3),
        ("conference-end", 4),
    ];
    let mut samples: Vec<SampleEvent> = events
        .iter()
        .map(|&(event, seq)| SampleEvent {
            path: format!("webhook-status/room-{event}.json"),
            json: signed_request(
                EventKind::ConferenceStatus.webhook_path(),
                &conference_params(event, seq),
                &format!("conference-{seq}"),
            ),
        })
        .collect();
    let records: Vec<Value> = [3, 0, 3, 1, 2]
        .into_iter()
        .enumerate()
        .map(|(i, at)| {
            let (event, seq) = events[at];
            let params = conference_params(event, seq);
            let mut envelope = Envelope::from_callback(EventKind::ConferenceStatus, &params, None)
                .expect("sample params are a conference callback");
            envelope.received_at = format!("2026-11-22T10:00:0{i}.000Z");
            sqs_record(&format!("room-{i}"), envelope.to_json())
        })
        .collect();
    samples.push(SampleEvent {
        path: "status-worker/sqs-batch-conference.json".into(),
        json: json!({ "Records": records }),
    });
    samples
}

const RECORDING_SID: &str = "RE5a3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d";

/// A recording-status callback of the sample call's recording.
fn recording_params(status: &str, url: &str) -> Params {
    let mut params = vec![
        ("AccountSid", local::ACCOUNT_SID.to_owned()),
        ("CallSid", CALL_SID.to_owned()),
        ("RecordingSid", RECORDING_SID.to_owned()),
        ("RecordingStatus", status.to_owned()),
        ("RecordingStartTime", TIMESTAMP.to_owned()),
        ("RecordingSource", "DialVerb".to_owned()),
        ("RecordingTrack", "both".to_owned()),
        ("ErrorCode", "0".to_owned()),
    ];
    if status != "in-progress" {
        params.extend([
            ("RecordingUrl", url.to_owned()),
            ("RecordingDuration", "42".to_owned()),
            ("RecordingChannels", "2".to_owned()),
        ]);
    }
    params.into_iter().collect()
}

fn twilio_recording_url() -> String {
    format!(
        "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{RECORDING_SID}",
        local::ACCOUNT_SID
    )
}

fn transcription_params() -> Params {
    [
        ("AccountSid", local::ACCOUNT_SID.to_owned()),
        ("CallSid", CALL_SID.to_owned()),
        ("RecordingSid", RECORDING_SID.to_owned()),
        ("RecordingUrl", twilio_recording_url()),
        ("TranscriptionSid", "TR5a3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d".to_owned()),
        ("TranscriptionStatus", "completed".to_owned()),
        ("TranscriptionText", "Hi, this is Sam, please call me back.".to_owned()),
        ("TranscriptionType", "fast".to_owned()),
        ("TranscriptionUrl", "https://api.twilio.com/2010-04-01/Accounts/x/Transcriptions/TR5a3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d".to_owned()),
    ]
    .into_iter()
    .collect()
}

fn signed_request(route: &str, params: &Params, name: &str) -> Value {
    let url = format!("{}{route}", local::PUBLIC_BASE_URL);
    let signature = compute_signature(local::AUTH_TOKEN, &url, params.iter());
    http_api_request(
        "POST",
        route,
        "",
        params,
        Some(&signature),
        &format!("sample-{name}"),
    )
}

fn recording_envelope(status: &str, url: &str) -> String {
    let params = recording_params(status, url);
    let callback =
        RecordingCallback::parse(&params).expect("sample params are a recording callback");
    let mut envelope = Envelope::recording_status(&callback, &params, None);
    envelope.received_at = "2026-11-22T10:00:43.000Z".into();
    envelope.to_json()
}

/// The recording and transcript samples.
fn recording_samples() -> Vec<SampleEvent> {
    let url = twilio_recording_url();
    let mut events = vec![
        SampleEvent {
            path: "webhook-recording/completed.json".into(),
            json: signed_request(
                "/twilio/recording",
                &recording_params("completed", &url),
                "recording-completed",
            ),
        },
        SampleEvent {
            path: "webhook-recording/in-progress.json".into(),
            json: signed_request(
                "/twilio/recording",
                &recording_params("in-progress", &url),
                "recording-in-progress",
            ),
        },
        SampleEvent {
            path: "webhook-transcription/completed.json".into(),
            json: signed_request(
                "/twilio/transcription",
                &transcription_params(),
                "transcription-completed",
            ),
        },
    ];
    let mut forged = signed_request(
        "/twilio/recording",
        &recording_params("completed", &url),
        "recording-forged",
    );
    forged["headers"]["x-twilio-signature"] = json!("bm90IHRoZSByaWdodCBzaWduYXR1cmU=");
    events.push(SampleEvent {
        path: "webhook-recording/rejected-bad-signature.json".into(),
        json: forged,
    });
    // Recorded only (in-progress, absent), and a RecordingUrl off the allow-list: refused,
    // sent to the DLQ with its reason, reported done. None is a batch item failure.
    let records = vec![
        sqs_record_from(
            "rec-in-progress",
            recording_envelope("in-progress", &url),
            "recording",
        ),
        sqs_record_from(
            "rec-absent",
            recording_envelope("absent", &url),
            "recording",
        ),
        sqs_record_from(
            "rec-refused-url",
            recording_envelope("completed", "http://169.254.169.254/latest/meta-data/iam"),
            "recording",
        ),
    ];
    events.push(SampleEvent {
        path: "recording-worker/sqs-batch.json".into(),
        json: json!({ "Records": records }),
    });
    // Twilio's own transcription, and Transcribe's state change as the EventBridge rule
    // delivers it (for a job the local stack never ran: retried, a batch item failure).
    let params = transcription_params();
    let callback =
        TranscriptionCallback::parse(&params).expect("sample params are a transcription");
    let mut transcription = Envelope::transcription(&callback, &params, None);
    transcription.received_at = "2026-11-22T10:01:30.000Z".into();
    let state_change = json!({
        "version": "0",
        "id": "5b4c1d2e-0000-4000-8000-000000000001",
        "detail-type": voicehooks::transcribe::STATE_CHANGE_DETAIL_TYPE,
        "source": "aws.transcribe",
        "account": "123456789012",
        "time": "2026-11-22T10:02:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TranscriptionJobName": RECORDING_SID, "TranscriptionJobStatus": "COMPLETED"}
    });
    let records = vec![
        sqs_record_from(
            "twilio-transcription",
            transcription.to_json(),
            "transcript",
        ),
        sqs_record_from(
            "transcribe-state-change",
            state_change.to_string(),
            "transcript",
        ),
    ];
    events.push(SampleEvent {
        path: "transcript-worker/sqs-batch.json".into(),
        json: json!({ "Records": records }),
    });
    events
}

/// Every sample event.
pub fn all() -> Vec<SampleEvent> {
    let mut events: Vec<SampleEvent> = CallStatus::ALL
        .into_iter()
        .map(|status| SampleEvent {
            path: format!("webhook-status/{}.json", status.as_str()),
            json: signed_status_request(status, status.rank() as u32),
        })
        .collect();

    let mut bad_signature = signed_status_request(CallStatus::Ringing, 1);
    bad_signature["headers"]["x-twilio-signature"] = json!("bm90IHRoZSByaWdodCBzaWduYXR1cmU=");
    events.push(SampleEvent {
        path: "webhook-status/rejected-bad-signature.json".into(),
        json: bad_signature,
    });
    let mut get = signed_status_request(CallStatus::Ringing, 1);
    get["requestContext"]["http"]["method"] = json!("GET");
    events.push(SampleEvent {
        path: "webhook-status/rejected-wrong-method.json".into(),
        json: get,
    });

    for (name, route, query, params) in voice_samples() {
        events.push(SampleEvent {
            path: format!("webhook-voice/{name}.json"),
            json: signed_voice_request(route, query, &params, name),
        });
    }
    let mut forged = signed_voice_request(
        "/twilio/voice",
        "",
        &voice_params("+16285550111", "+14155550100", &[]),
        "forged",
    );
    forged["headers"]["x-twilio-signature"] = json!("bm90IHRoZSByaWdodCBzaWduYXR1cmU=");
    events.push(SampleEvent {
        path: "webhook-voice/rejected-bad-signature.json".into(),
        json: forged,
    });

    let in_order = [
        (CallStatus::Initiated, 0),
        (CallStatus::Ringing, 1),
        (CallStatus::InProgress, 2),
        (CallStatus::Completed, 3),
    ];
    let started_params = status_params(CallStatus::Ringing, 1);
    let mut started =
        Envelope::call_started(CALL_SID, local::ACCOUNT_SID, &started_params, "main-menu");
    started.received_at = "2026-11-22T09:59:59.000Z".into();
    let records: Vec<Value> = std::iter::once(sqs_record("msg-started", started.to_json()))
        .chain(in_order.iter().enumerate().map(|(i, &(status, seq))| {
            sqs_record(&format!("msg-{i}"), envelope(status, seq).to_json())
        }))
        .collect();
    events.push(SampleEvent {
        path: "status-worker/sqs-batch.json".into(),
        json: json!({ "Records": records }),
    });

    let future = envelope(CallStatus::Busy, 2)
        .to_json()
        .replacen("\"v\":1", "\"v\":99", 1);
    let mixed = vec![
        sqs_record("good-1", envelope(CallStatus::Ringing, 1).to_json()),
        sqs_record("poison-not-json", "hello from another system".into()),
        sqs_record(
            "poison-foreign-json",
            json!({"Records": [{"eventName": "ObjectCreated:Put"}]}).to_string(),
        ),
        sqs_record("poison-future-version", future),
        sqs_record("good-2", envelope(CallStatus::Completed, 3).to_json()),
    ];
    events.push(SampleEvent {
        path: "status-worker/sqs-batch-with-poison.json".into(),
        json: json!({ "Records": mixed }),
    });
    events.extend(recording_samples());
    events.extend(softphone_samples());
    events.extend(conference_samples());
    events
}

/// `POST /softphone/token` as API Gateway invokes it after its JWT authorizer passed the
/// bearer token: the claims as strings under `requestContext.authorizer.jwt`.
fn softphone_token_request(claims: Option<Value>) -> Value {
    let route = voicehooks::softphone::TOKEN_PATH;
    let mut request = json!({
        "version": "2.0",
        "routeKey": format!("POST {route}"),
        "rawPath": route,
        "rawQueryString": "",
        "headers": {
            "authorization": "Bearer eyJ…(checked by the authorizer, not the function)",
            "content-length": "0",
            "host": local::PUBLIC_BASE_URL.trim_start_matches("https://"),
            "origin": "https://softphone.example.com",
            "user-agent": "Mozilla/5.0",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": local::PUBLIC_BASE_URL.trim_start_matches("https://"),
            "domainPrefix": "hooks",
            "http": { "method": "POST", "path": route, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0" },
            "requestId": "req-softphone",
            "routeKey": format!("POST {route}"),
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_341_600_000u64
        },
        "isBase64Encoded": false
    });
    if let Some(claims) = claims {
        request["requestContext"]["authorizer"] =
            json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    request
}

fn softphone_samples() -> Vec<SampleEvent> {
    let claims = |sub: &str| {
        json!({
            "iss": crate::gateway::LOCAL_ISSUER,
            "aud": crate::gateway::LOCAL_AUDIENCE,
            "sub": sub,
            "iat": "1795341590",
            "exp": "1795345190",
            "email": "alice@example.com",
        })
    };
    [
        ("signed-in", Some(claims("alice"))),
        // An Auth0 subject: `|` is a character Twilio refuses in an identity.
        ("identity-refused", Some(claims("auth0|5f1c0a9e"))),
        // Reached without the authorizer (a misrouted URL): nothing is minted.
        ("no-authorizer", None),
    ]
    .into_iter()
    .map(|(name, claims)| SampleEvent {
        path: format!("softphone-token/{name}.json"),
        json: softphone_token_request(claims),
    })
    .collect()
}

/// The file text of a sample event (stable formatting, trailing newline).
pub fn render(event: &SampleEvent) -> String {
    let mut text = serde_json::to_string_pretty(&event.json).expect("JSON values serialise");
    text.push('\n');
    text
}
