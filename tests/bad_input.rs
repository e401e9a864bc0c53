//! The bad-input catalogue: for each webhook, more than 30 hostile or broken requests sent to
//! the real function binaries under cargo-lambda, each with the status it must get and the
//! check that nothing was enqueued. "Nothing enqueued" is counted at the wire: the
//! functions reach AWS through devstack's proxy, which counts every SQS send they make.
//! Each table ends with a well-formed request that is queued, so the count is shown to see
//! an enqueue.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use devstack::faults::FaultPlan;
use devstack::{LocalStack, StackOptions};
use reqwest::Method;
use sha2::{Digest, Sha256};
use voicehooks::config::local;
use voicehooks::twilio::Params;
use voicehooks::twilio::signature::compute_signature;

const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const RECORDING_SID: &str = "RE0123456789abcdef0123456789abcdef";

/// How a case is signed.
#[derive(Clone)]
enum Sign {
    /// No `X-Twilio-Signature` at all.
    None,
    /// The real signature of the request as sent (for cases about what comes after it).
    Valid,
    /// This header value, as is.
    Header(String),
    /// A valid signature, but of this URL and these params instead.
    Of { url: String, params: Params },
    /// Signed with another token.
    OtherToken,
}

/// One hostile request.
#[derive(Clone)]
struct Case {
    name: String,
    method: Method,
    /// Appended to the function's path (a query, say).
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    /// The params the body carries, for signing.
    params: Params,
    sign: Sign,
    headers: Vec<(String, String)>,
    expect: u16,
}

impl Case {
    fn form(name: &str, params: &Params, sign: Sign, expect: u16) -> Self {
        Self {
            name: name.into(),
            method: Method::POST,
            query: String::new(),
            content_type: Some("application/x-www-form-urlencoded".into()),
            body: params.to_form().into_bytes(),
            params: params.clone(),
            sign,
            headers: Vec::new(),
            expect,
        }
    }

    fn raw(name: &str, content_type: Option<&str>, body: &[u8], sign: Sign, expect: u16) -> Self {
        Self {
            name: name.into(),
            method: Method::POST,
            query: String::new(),
            content_type: content_type.map(str::to_owned),
            body: body.to_vec(),
            params: Params::default(),
            sign,
            headers: Vec::new(),
            expect,
        }
    }

    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    fn query(mut self, query: &str) -> Self {
        self.query = query.into();
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().copied().collect()
}

fn with(base: &Params, name: &str, value: &str) -> Params {
    let mut pairs: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.push((name.to_owned(), value.to_owned()));
    Params::new(pairs)
}

fn without(base: &Params, name: &str) -> Params {
    Params::new(
        base.iter()
            .filter(|(k, _)| *k != name)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// The hostile requests every webhook must refuse, built around one valid request.
/// `signed_malformed`: the status of a signed request whose params are wrong (400 on the
/// callbacks; the voice webhook answers a caller whatever the params, 200 with TwiML).
fn catalogue(path: &str, valid: &Params, signed_malformed: u16) -> Vec<Case> {
    let public = format!("{}{path}", local::PUBLIC_BASE_URL);
    let good_signature = compute_signature(local::AUTH_TOKEN, &public, valid.iter());
    let form = |name: &str, sign: Sign, expect: u16| Case::form(name, valid, sign, expect);
    let mut tampered = with(valid, "CallSid", "CAffffffffffffffffffffffffffffffff");
    let many = Params::new(
        (0..5_000)
            .map(|i| (format!("P{i}"), "1".to_owned()))
            .chain(valid.iter().map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    );
    let json = serde_json::to_vec(
        &valid
            .iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>(),
    )
    .unwrap_or_default();
    let json_hash = hex::encode(Sha256::digest(&json));
    let mut cases = vec![
        // Signature games.
        form("no signature", Sign::None, 403),
        form("empty signature", Sign::Header(String::new()), 403),
        form("signed with another token", Sign::OtherToken, 403),
        form(
            "signed for another webhook's URL",
            Sign::Of {
                url: format!("{}/twilio/elsewhere", local::PUBLIC_BASE_URL),
                params: valid.clone(),
            },
            403,
        ),
        form(
            "signed for the http:// URL",
            Sign::Of {
                url: public.replacen("https://", "http://", 1),
                params: valid.clone(),
            },
            403,
        ),
        form(
            "signed for another host",
            Sign::Of {
                url: format!("https://evil.example.com{path}"),
                params: valid.clone(),
            },
            403,
        ),
        form(
            "signature truncated",
            Sign::Header(good_signature[..good_signature.len() - 1].to_owned()),
            403,
        ),
        form(
            "signature in another case",
            Sign::Header(good_signature.to_ascii_lowercase()),
            403,
        ),
        form("signature not base64", Sign::Header("!!!!".into()), 403),
        form(
            "signature 10 KiB long",
            Sign::Header("A".repeat(10_240)),
            403,
        ),
        Case::form(
            "a value changed after signing",
            &tampered,
            Sign::Of {
                url: public.clone(),
                params: valid.clone(),
            },
            403,
        ),
        Case::form(
            "a param added after signing",
            &with(valid, "Injected", "1"),
            Sign::Of {
                url: public.clone(),
                params: valid.clone(),
            },
            403,
        ),
        form(
            "a query added after signing",
            Sign::Header(good_signature.clone()),
            403,
        )
        .query("?admin=1"),
        form(
            "the signature of another request replayed",
            Sign::Of {
                url: public.clone(),
                params: tampered.clone(),
            },
            403,
        ),
        form(
            "a bogus signature header first",
            Sign::Header("bogus=".into()),
            403,
        )
        .header("x-twilio-signature", &good_signature),
        // Spoofed proxy headers do not change the URL that is checked.
        form(
            "Host and X-Forwarded-* spoofed, signed for the spoofed URL",
            Sign::Of {
                url: format!("https://evil.example.com{path}"),
                params: valid.clone(),
            },
            403,
        )
        .header("x-forwarded-host", "evil.example.com")
        .header("x-forwarded-proto", "https"),
        // Encodings.
        Case::raw(
            "body not UTF-8",
            Some("application/x-www-form-urlencoded"),
            b"CallSid=\xff\xfe",
            Sign::None,
            400,
        ),
        Case::raw(
            "a broken percent-escape",
            Some("application/x-www-form-urlencoded"),
            b"CallSid=%zz",
            Sign::None,
            400,
        ),
        Case::raw(
            "NUL bytes and double encoding, unsigned",
            Some("application/x-www-form-urlencoded"),
            b"CallSid=%00%2500&CallStatus=%252F..%252F",
            Sign::None,
            403,
        ),
        // Sizes.
        Case::raw(
            "a body over 64 KiB",
            Some("application/x-www-form-urlencoded"),
            format!("Big={}", "a".repeat(64 * 1024)).as_bytes(),
            Sign::Valid,
            400,
        ),
        Case::raw(
            "a 1 MiB body",
            Some("application/x-www-form-urlencoded"),
            &vec![b'a'; 1 << 20],
            Sign::None,
            400,
        ),
        Case::form("5,000 params, unsigned", &many, Sign::None, 403),
        Case::raw(
            "an empty body, signed",
            Some("application/x-www-form-urlencoded"),
            b"",
            Sign::Valid,
            signed_malformed,
        ),
        // Methods.
        form("GET", Sign::Valid, 405).method(Method::GET),
        form("PUT", Sign::Valid, 405).method(Method::PUT),
        form("DELETE", Sign::Valid, 405).method(Method::DELETE),
        form("PATCH", Sign::Valid, 405).method(Method::PATCH),
        // Content types.
        Case::raw(
            "no content type",
            None,
            valid.to_form().as_bytes(),
            Sign::Valid,
            400,
        ),
        Case::raw(
            "text/plain",
            Some("text/plain"),
            valid.to_form().as_bytes(),
            Sign::Valid,
            400,
        ),
        Case::raw(
            "multipart/form-data",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\nContent-Disposition: form-data; name=\"CallSid\"\r\n\r\nCA1\r\n--x--\r\n",
            Sign::None,
            400,
        ),
        Case::raw(
            "application/xml",
            Some("application/xml"),
            b"<CallSid>CA1</CallSid>",
            Sign::None,
            400,
        ),
        // JSON where a form is expected, and the reverse.
        Case::raw(
            "JSON sent as a form",
            Some("application/x-www-form-urlencoded"),
            &json,
            Sign::None,
            403,
        ),
        Case::raw(
            "a form sent as JSON",
            Some("application/json"),
            valid.to_form().as_bytes(),
            Sign::None,
            400,
        ),
        Case::raw(
            "JSON without bodySHA256 in the URL",
            Some("application/json"),
            &json,
            Sign::Valid,
            400,
        ),
        Case::raw(
            "JSON whose body hash does not match the signed URL",
            Some("application/json"),
            &json,
            Sign::Of {
                url: format!("{public}?bodySHA256={}", "0".repeat(64)),
                params: Params::default(),
            },
            403,
        )
        .query(&format!("?bodySHA256={}", "0".repeat(64))),
        Case::raw(
            "JSON with its hash in the URL, unsigned",
            Some("application/json"),
            &json,
            Sign::None,
            403,
        )
        .query(&format!("?bodySHA256={json_hash}")),
    ];
    // Missing the params every callback has, with a valid signature.
    for name in ["CallSid", "AccountSid"] {
        cases.push(Case::form(
            &format!("signed, without {name}"),
            &without(valid, name),
            Sign::Valid,
            signed_malformed,
        ));
    }
    tampered = with(valid, "CallSid", "CA../../etc/passwd");
    cases.push(Case::form(
        "signed, a CallSid that is not a SID",
        &tampered,
        Sign::Valid,
        signed_malformed,
    ));
    cases
}

/// Raw requests reqwest refuses to build: CR/LF in header values.
fn header_injections(path: &str, valid: &Params) -> Vec<(String, String)> {
    let body = valid.to_form();
    let request = |header: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n{header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    vec![
        (
            "CR LF in X-Twilio-Signature".into(),
            request("X-Twilio-Signature: abc\r\n\rX-Injected: 1"),
        ),
        (
            "a bare LF smuggling a second signature".into(),
            request("X-Twilio-Signature: abc\nX-Twilio-Signature: def"),
        ),
        (
            "NUL in the idempotency header".into(),
            request("I-Twilio-Idempotency-Token: a\0b\r\nX-Twilio-Signature: abc"),
        ),
    ]
}

struct Webhook<'a> {
    stack: &'a LocalStack,
    function: &'static str,
    path: &'static str,
    http: reqwest::Client,
}

impl Webhook<'_> {
    fn enqueued(&self) -> u64 {
        let proxy = self.stack.proxy.as_ref().expect("the stack has a proxy");
        proxy.requests("webhook-", "sqs", "SendMessage")
            + proxy.requests("webhook-", "sqs", "SendMessageBatch")
    }

    async fn send(&self, case: &Case) -> (u16, String) {
        let public = format!("{}{}{}", local::PUBLIC_BASE_URL, self.path, case.query);
        let url = format!(
            "{}{}{}",
            self.stack.functions.function_url(self.function),
            self.path,
            case.query
        );
        let mut request = self
            .http
            .request(case.method.clone(), url)
            .body(case.body.clone());
        if let Some(content_type) = &case.content_type {
            request = request.header("content-type", content_type);
        }
        let signature = match &case.sign {
            Sign::None => None,
            Sign::Valid => Some(compute_signature(
                local::AUTH_TOKEN,
                &public,
                case.params.iter(),
            )),
            Sign::Header(value) => Some(value.clone()),
            Sign::Of { url, params } => {
                Some(compute_signature(local::AUTH_TOKEN, url, params.iter()))
            }
            Sign::OtherToken => Some(compute_signature(
                "ffffffffffffffffffffffffffffffff",
                &public,
                case.params.iter(),
            )),
        };
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        for (name, value) in &case.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the function answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Runs the catalogue plus `extra`, then a valid request that must be queued.
    async fn check(&self, valid: &Params, signed_malformed: u16, extra: Vec<Case>) {
        let mut cases = catalogue(self.path, valid, signed_malformed);
        cases.extend(extra);
        let mut failures = Vec::new();
        for case in &cases {
            let before = self.enqueued();
            let (status, body) = self.send(case).await;
            let after = self.enqueued();
            if status != case.expect {
                failures.push(format!(
                    "{}: HTTP {status}, expected {} ({})",
                    case.name,
                    case.expect,
                    body.trim()
                ));
            }
            if after != before {
                failures.push(format!(
                    "{}: {} message(s) enqueued",
                    case.name,
                    after - before
                ));
            }
            if case.expect == 400 && body.trim().lines().count() != 1 {
                failures.push(format!("{}: reason not one line: {body:?}", case.name));
            }
        }
        let port = self.stack.functions.port;
        let raw_path = format!("/lambda-url/{}{}", self.function, self.path);
        for (name, request) in header_injections(&raw_path, valid) {
            let before = self.enqueued();
            let status = send_raw(port, &request);
            if !(400..500).contains(&status) {
                failures.push(format!("{name}: HTTP {status}, expected a 4xx"));
            }
            if self.enqueued() != before {
                failures.push(format!("{name}: enqueued"));
            }
        }
        let total = cases.len() + 3;
        assert!(total >= 30, "only {total} cases for {}", self.path);
        assert!(
            failures.is_empty(),
            "{} of {total} cases for {} failed:\n{}",
            failures.len(),
            self.path,
            failures.join("\n")
        );
        // The control: a well-formed request is queued, and the counter sees it.
        let before = self.enqueued();
        let (status, body) = self.send(&Case::form("valid", valid, Sign::Valid, 0)).await;
        assert!(status < 300, "the valid request got HTTP {status}: {body}");
        assert_eq!(
            self.enqueued(),
            before + 1,
            "the valid request was queued once"
        );
    }
}

/// Sends a raw HTTP request; the status code of the answer (0: the connection was closed).
fn send_raw(port: u16, request: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

async fn stack() -> LocalStack {
    LocalStack::start(StackOptions {
        label: "bad-input".into(),
        faults: Some(FaultPlan::default()),
        ..Default::default()
    })
    .await
    .expect("the local stack starts")
}

fn webhook<'a>(stack: &'a LocalStack, function: &'static str, path: &'static str) -> Webhook<'a> {
    Webhook {
        stack,
        function,
        path,
        http: reqwest::Client::new(),
    }
}

/// Starts a stack, runs the catalogue (and `extra`) against `function` at `path`, stops it
/// (a failing check drops the stack, which stops it too).
async fn check_webhook(
    function: &'static str,
    path: &'static str,
    valid: Params,
    signed_malformed: u16,
    extra: Vec<Case>,
) {
    let stack = stack().await;
    webhook(&stack, function, path)
        .check(&valid, signed_malformed, extra)
        .await;
    stack.stop().await;
}

/// A signed request without `name`: 400 on a callback.
fn signed_without(valid: &Params, name: &str) -> Case {
    Case::form(
        &format!("signed, without {name}"),
        &without(valid, name),
        Sign::Valid,
        400,
    )
}

fn call_params() -> Params {
    params(&[
        ("AccountSid", local::ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("From", "+14155550100"),
        ("To", "+14155550101"),
        ("Direction", "inbound"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_webhook_refuses_every_bad_request_and_queues_nothing() {
    let valid = with(
        &with(&call_params(), "CallStatus", "ringing"),
        "SequenceNumber",
        "1",
    );
    let extra = vec![
        signed_without(&valid, "CallStatus"),
        Case::form(
            "signed, an unknown CallStatus",
            &with(&valid, "CallStatus", "exploded"),
            Sign::Valid,
            400,
        ),
    ];
    check_webhook("webhook-status", "/twilio/status", valid, 400, extra).await;
}

/// The conference route is served by the status function: the same contract, its own
/// params (a participant event needs the participant's CallSid, a room event names a CF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conference_webhook_refuses_every_bad_request_and_queues_nothing() {
    let valid = params(&[
        ("AccountSid", local::ACCOUNT_SID),
        ("ConferenceSid", "CF0123456789abcdef0123456789abcdef"),
        ("FriendlyName", "daily-standup"),
        ("StatusCallbackEvent", "participant-join"),
        ("SequenceNumber", "1"),
        ("CallSid", CALL_SID),
        ("Muted", "false"),
        ("Hold", "false"),
    ]);
    let extra = vec![
        signed_without(&valid, "CallSid"),
        signed_without(&valid, "ConferenceSid"),
        signed_without(&valid, "StatusCallbackEvent"),
        Case::form(
            "signed, a call SID as the ConferenceSid",
            &with(&valid, "ConferenceSid", CALL_SID),
            Sign::Valid,
            400,
        ),
        Case::form(
            "signed, Muted neither true nor false",
            &with(&valid, "Muted", "yes"),
            Sign::Valid,
            400,
        ),
        Case::form(
            "signed, an event name that is no word",
            &with(&valid, "StatusCallbackEvent", "join; DROP TABLE"),
            Sign::Valid,
            400,
        ),
    ];
    check_webhook("webhook-status", "/twilio/conference", valid, 400, extra).await;
}

fn recording_params() -> Params {
    params(&[
        ("AccountSid", local::ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("RecordingSid", RECORDING_SID),
        (
            "RecordingUrl",
            &format!(
                "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{RECORDING_SID}",
                local::ACCOUNT_SID
            ),
        ),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "7"),
        ("RecordingChannels", "1"),
        ("RecordingSource", "RecordVerb"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_webhook_refuses_every_bad_request_and_queues_nothing() {
    let valid = recording_params();
    let extra = vec![
        signed_without(&valid, "RecordingSid"),
        signed_without(&valid, "RecordingUrl"),
        Case::form(
            "a non-Twilio RecordingUrl, unsigned",
            &with(
                &valid,
                "RecordingUrl",
                "http://169.254.169.254/latest/meta-data",
            ),
            Sign::None,
            403,
        ),
        Case::form(
            "a non-Twilio RecordingUrl, signed with another token",
            &with(&valid, "RecordingUrl", "https://evil.example.com/a.wav"),
            Sign::OtherToken,
            403,
        ),
    ];
    check_webhook("webhook-recording", "/twilio/recording", valid, 400, extra).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transcription_webhook_refuses_every_bad_request_and_queues_nothing() {
    let valid = with(
        &with(
            &with(
                &recording_params(),
                "TranscriptionSid",
                "TR0123456789abcdef0123456789abcdef",
            ),
            "TranscriptionStatus",
            "completed",
        ),
        "TranscriptionText",
        "hello",
    );
    let extra = vec![
        signed_without(&valid, "TranscriptionSid"),
        signed_without(&valid, "RecordingSid"),
    ];
    check_webhook(
        "webhook-transcription",
        "/twilio/transcription",
        valid,
        400,
        extra,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_webhook_refuses_every_bad_request_and_queues_nothing() {
    let valid = with(&call_params(), "CallStatus", "ringing");
    // The catalogue's signed-but-malformed cases get the caller an answer, not a 400.
    let extra = Vec::new();
    check_webhook("webhook-voice", "/twilio/voice", valid, 200, extra).await;
}
