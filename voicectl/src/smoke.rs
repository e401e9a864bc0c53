//! `voicectl smoke`: one synthetic call through a stack, the way Twilio would make it, then
//! a check that it landed in the table: the flow that answered and every status, in order.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use voicehooks::events::EventKind;
use voicehooks::twilio::{CallStatus, Params};

use crate::connect::Stack;
use crate::simulate::{Twilio, VoiceServer};

pub struct SmokeOptions {
    /// The public base URL Twilio is given (the stack's `WebhookBaseUrl` output).
    pub base_url: String,
    pub account_sid: String,
    /// The number the synthetic call dials (one of the flows' numbers).
    pub to: String,
    /// How long to wait for the call to land in the table.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    pub call_sid: String,
    pub twiml_ms: Option<f64>,
    /// Each status callback's acknowledgement, in microseconds.
    pub ack_us: Vec<u64>,
    /// From the last callback's answer until the table showed the whole call.
    pub landed_after_ms: Option<f64>,
    pub flow: Option<String>,
    pub final_status: Option<String>,
    pub events_stored: usize,
    pub problems: Vec<String>,
}

impl SmokeReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The statuses of an answered inbound call, as Twilio numbers them.
const STATUSES: [CallStatus; 4] = [
    CallStatus::Initiated,
    CallStatus::Ringing,
    CallStatus::InProgress,
    CallStatus::Completed,
];

pub async fn run(stack: &Stack, twilio: &Twilio, options: &SmokeOptions) -> SmokeReport {
    let call = SmokeCall {
        sid: format!("CA{:032x}", rand::rng().random::<u128>()),
        options,
    };
    let mut report = SmokeReport {
        call_sid: call.sid.clone(),
        twiml_ms: None,
        ack_us: Vec::new(),
        landed_after_ms: None,
        flow: None,
        final_status: None,
        events_stored: 0,
        problems: Vec::new(),
    };
    call.ask_for_twiml(twilio, &mut report).await;
    call.post_statuses(twilio, &mut report).await;
    if report.problems.is_empty() {
        call.wait_until_landed(stack, &mut report).await;
    }
    report
}

/// The synthetic call: its sid, and where and how it is made.
struct SmokeCall<'a> {
    sid: String,
    options: &'a SmokeOptions,
}

impl SmokeCall<'_> {
    /// Where Twilio posts `kind` on the stack under test.
    fn url(&self, kind: EventKind) -> String {
        let base = self.options.base_url.trim_end_matches('/');
        format!("{base}{}", kind.webhook_path())
    }

    /// The parameters Twilio posts for this call at `status`; a status callback's also carry
    /// its `SequenceNumber`.
    fn params(&self, status: CallStatus, seq: Option<usize>) -> Params {
        let mut pairs = vec![
            ("AccountSid", self.options.account_sid.clone()),
            ("ApiVersion", "2010-04-01".to_owned()),
            ("CallSid", self.sid.clone()),
            ("CallStatus", status.as_str().to_owned()),
            ("Direction", "inbound".to_owned()),
            // Twilio's magic test number: never a real caller.
            ("From", "+15005550006".to_owned()),
            ("To", self.options.to.clone()),
        ];
        if let Some(seq) = seq {
            pairs.push(("SequenceNumber", seq.to_string()));
            pairs.push(("CallbackSource", "call-progress-events".to_owned()));
        }
        if status == CallStatus::Completed {
            pairs.push(("CallDuration", "1".to_owned()));
        }
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Params>()
    }

    /// The voice webhook, as Twilio asks it when the call rings.
    async fn ask_for_twiml(&self, twilio: &Twilio, report: &mut SmokeReport) {
        let voice_url = self.url(EventKind::CallStarted);
        match twilio
            .ask(&voice_url, &self.params(CallStatus::Ringing, None))
            .await
        {
            Ok((xml, latency_us)) if xml.contains("<Response") => {
                report.twiml_ms = Some(latency_us as f64 / 1e3);
            }
            Ok((xml, _)) => report
                .problems
                .push(format!("the voice webhook answered without TwiML: {xml}")),
            Err(e) => report.problems.push(format!("the voice webhook: {e}")),
        }
    }

    /// Every status callback of an answered call, in order.
    async fn post_statuses(&self, twilio: &Twilio, report: &mut SmokeReport) {
        let status_url = self.url(EventKind::CallStatus);
        let Some(target) = twilio.target(&status_url) else {
            report.problems.push(format!("no --route for {status_url}"));
            return;
        };
        for (seq, status) in STATUSES.into_iter().enumerate() {
            let token = format!("smoke-{}-{seq}", self.sid);
            let (answer, latency_us) = twilio
                .post(
                    &target,
                    &status_url,
                    &self.params(status, Some(seq)),
                    Some(&token),
                )
                .await;
            match answer {
                Ok(r) if r.status().is_success() => report.ack_us.push(latency_us),
                Ok(r) => report
                    .problems
                    .push(format!("{status} callback answered HTTP {}", r.status())),
                Err(e) => report.problems.push(format!("{status} callback: {e}")),
            }
        }
    }

    /// Reads the call until the table shows its flow and every status, or the timeout.
    async fn wait_until_landed(&self, stack: &Stack, report: &mut SmokeReport) {
        let sent = Instant::now();
        let store = stack.calls();
        loop {
            match store.get_call(&self.sid).await {
                Ok(Some(call)) => {
                    report.flow = call.flow.clone();
                    report.final_status = call.status.clone();
                    report.events_stored = call.timeline.len();
                    if call.flow.is_some()
                        && call.status.as_deref() == Some(CallStatus::Completed.as_str())
                        && call.timeline.len() == STATUSES.len()
                    {
                        report.landed_after_ms = Some(sent.elapsed().as_secs_f64() * 1e3);
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    report
                        .problems
                        .push(format!("reading the calls table: {e}"));
                    return;
                }
            }
            if sent.elapsed() > self.options.timeout {
                report.problems.push(format!(
                    "after {:?} the table shows flow {:?}, status {:?}, {} of {} events: is the \
                     status worker running (its DLQ: `voicectl dlq stats`)?",
                    self.options.timeout,
                    report.flow,
                    report.final_status,
                    report.events_stored,
                    STATUSES.len()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
