//! `POST /twilio/voice` (and its action routes `/menu`, `/dial`, `/recorded`): what to do
//! with a call, as TwiML, from the flows in `config/flows.toml`.
//!
//! The caller is on the line, so this webhook differs from the callbacks: once a request is
//! shown to come from Twilio, the answer is always 200 with valid TwiML. Queue down, flows
//! unreadable, a stale action URL, an unknown number: the caller hears the apology and the
//! fallback flow, and the failure is logged loudly. Only requests that cannot be shown to
//! come from Twilio are refused (403 bad signature, 405, 400 for a body that cannot even be
//! checked), as on every webhook.

use std::time::{Duration, Instant};

use crate::events::Envelope;
use crate::flows::{Flows, FlowsError, Rendered, Step, Urls, safe_twiml};
use crate::metrics::{self, name};
use crate::queue::EventQueue;
use crate::secrets::AuthTokens;
use crate::spill::{Deadlines, Delivery, NoSpill, SpillStore};
use crate::telemetry::mask_phone;
use crate::twilio::Params;
use crate::twilio::params::sid;
use crate::webhook::{Acknowledger, Rejection, Reply, Verifier, WebhookRequest, log_rejection};

/// Said when even the flows could not be read; then the call ends.
pub const UNREADABLE_FLOWS_MESSAGE: &str =
    "We're sorry, we can't take your call right now. Please try again later.";

/// What became of a new call's `call.started` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedEvent {
    Queued,
    /// SQS did not take it within its share of the deadline; the spill did.
    Spilled,
    /// Not a new call (an action route), or the request lacked the SIDs.
    NotSent,
    /// Neither store took it within the deadline (what each said).
    Failed(String),
}

/// Built once per cold start; shared by all invocations.
pub struct VoiceWebhook<Q, T, S = NoSpill> {
    ack: Acknowledger<Q, T, S>,
    flows: Result<Flows, FlowsError>,
    urls: Urls,
    enqueue_deadline: Duration,
}

impl<Q: EventQueue, T: AuthTokens, S: SpillStore> VoiceWebhook<Q, T, S> {
    /// `flows` is taken as loaded, errors included: a bad file must still answer callers.
    pub fn new(
        ack: Acknowledger<Q, T, S>,
        flows: Result<Flows, FlowsError>,
        public_base_url: &str,
        enqueue_deadline: Duration,
    ) -> Self {
        if let Err(e) = &flows {
            tracing::error!(error = %e, "call flows unreadable: every caller gets the apology");
        }
        Self {
            ack,
            flows,
            urls: Urls::new(public_base_url),
            enqueue_deadline,
        }
    }

    pub async fn answer(&self, req: &WebhookRequest<'_>) -> Reply {
        let reply = self.answer_request(req).await;
        metrics::flush();
        reply
    }

    async fn answer_request(&self, req: &WebhookRequest<'_>) -> Reply {
        let started = Instant::now();
        let params = match self.ack.verify(req).await {
            Ok(verified) => verified.params,
            // Without the token we cannot tell Twilio from anyone else, and a caller may be
            // waiting: an apology that names no flow and dials no one, and nothing enqueued.
            Err(Rejection::TokensUnavailable(e)) => {
                let reply = Answer::unverified(format!("auth token unavailable: {e}"));
                return self.finish(reply, None, StartedEvent::NotSent, started);
            }
            Err(rejection) => {
                log_rejection(&rejection, "voice", started.elapsed().as_micros() as u64);
                return Reply::rejected(&rejection);
            }
        };
        let Ok(flows) = &self.flows else {
            let reply = Answer::unreadable();
            return self.finish(reply, Some(&params), StartedEvent::NotSent, started);
        };
        let step = Step::from_request(req.raw_path, req.raw_query);
        let rendered = match &step {
            Ok(step) => flows.render(step, &params, &self.urls),
            Err(e) => flows.apology(e.to_string(), &params, &self.urls),
        };
        let answer = Answer::from(rendered);
        // The TwiML is ready (rendering takes about a microsecond); the caller now waits
        // only for the enqueue, and never longer than the deadline.
        // Only well-formed SIDs make an event: a signed request with a CallSid like
        // `CA../x` still gets the caller an answer, but nothing downstream keys on it.
        let event = match (
            &step,
            sid(&params, "CallSid", "CA"),
            sid(&params, "AccountSid", "AC"),
        ) {
            (Ok(Step::Enter { .. }), Ok(call_sid), Ok(account_sid)) => {
                let envelope = Envelope::call_started(call_sid, account_sid, &params, &answer.flow);
                let deadlines = Deadlines::within(self.enqueue_deadline);
                match self.ack.enqueue(&envelope, deadlines).await {
                    Ok(Delivery::Queued) => StartedEvent::Queued,
                    Ok(Delivery::Spilled) => StartedEvent::Spilled,
                    Err(Rejection::QueueUnavailable(why)) => StartedEvent::Failed(why),
                    Err(other) => StartedEvent::Failed(other.to_string()),
                }
            }
            _ => StartedEvent::NotSent,
        };
        self.finish(answer, Some(&params), event, started)
    }

    fn finish(
        &self,
        answer: Answer,
        params: Option<&Params>,
        event: StartedEvent,
        started: Instant,
    ) -> Reply {
        let latency_us = started.elapsed().as_micros() as u64;
        let param = |name| params.and_then(|p| p.get(name));
        let call_sid = param("CallSid");
        let from = param("From").map(mask_phone);
        let (flow, outcome) = (answer.flow.as_str(), answer.outcome);
        metrics::millis(name::TWIML_LATENCY, latency_us);
        if matches!(event, StartedEvent::Failed(_)) {
            metrics::count(name::ENQUEUE_FAILURES, 1);
        }
        match (&answer.problem, &event) {
            (Some(problem), _) => tracing::error!(
                call_sid,
                kind = "voice",
                flow,
                outcome,
                from,
                latency_us,
                problem = problem.as_str(),
                "caller got the apology"
            ),
            (None, StartedEvent::Failed(reason)) => tracing::error!(
                call_sid, kind = "voice", flow, outcome, from, latency_us, reason = %reason,
                "call.started not queued; the caller was answered anyway"
            ),
            (None, _) => tracing::info!(
                call_sid, kind = "voice", flow, outcome, from, latency_us, started_event = ?event,
                "voice webhook answered"
            ),
        }
        Reply::twiml(answer.xml)
    }
}

/// A rendered answer, as the logs describe it.
struct Answer {
    xml: String,
    flow: String,
    outcome: &'static str,
    problem: Option<String>,
}

impl From<Rendered> for Answer {
    fn from(r: Rendered) -> Self {
        Self {
            xml: r.twiml.to_xml(),
            flow: r.flow,
            outcome: r.outcome,
            problem: r.problem,
        }
    }
}

impl Answer {
    fn unreadable() -> Self {
        Self::safe("call flows unreadable".into())
    }

    /// For a request that could not be verified: nothing about the flows.
    fn unverified(problem: String) -> Self {
        Self::safe(problem)
    }

    fn safe(problem: String) -> Self {
        Self {
            xml: safe_twiml(UNREADABLE_FLOWS_MESSAGE).to_xml(),
            flow: String::new(),
            outcome: "apology",
            problem: Some(problem),
        }
    }
}

/// `POST /twilio/fallback`: the number's `VoiceFallbackUrl`. Twilio asks it when the voice URL
/// failed (a 5xx, a timeout, a document it could not parse), with `ErrorCode` and `ErrorUrl`
/// saying which (<https://www.twilio.com/docs/usage/security/availability-reliability>).
/// Whatever failed, it touches no queue, table or bucket, and its answer needs none: the
/// caller hears the apology and the call ends. The signature is checked when the token can
/// be had, as on every route, but a token Secrets Manager cannot give does not stop the
/// answer, which reveals nothing and starts nothing.
pub struct VoiceFallback<T> {
    verifier: Verifier<T>,
}

impl<T: AuthTokens> VoiceFallback<T> {
    pub fn new(verifier: Verifier<T>) -> Self {
        Self { verifier }
    }

    pub async fn answer(&self, req: &WebhookRequest<'_>) -> Reply {
        let started = Instant::now();
        let params = match self.verifier.verify(req).await {
            Ok(verified) => Some(verified.params),
            Err(Rejection::TokensUnavailable(_)) => None,
            Err(rejection) => {
                let latency_us = started.elapsed().as_micros() as u64;
                log_rejection(&rejection, "voice-fallback", latency_us);
                metrics::flush();
                return Reply::rejected(&rejection);
            }
        };
        let param = |name| params.as_ref().and_then(|p| p.get(name));
        let latency_us = started.elapsed().as_micros() as u64;
        metrics::count(name::VOICE_FALLBACKS, 1);
        metrics::millis(name::TWIML_LATENCY, latency_us);
        tracing::error!(
            call_sid = param("CallSid"),
            kind = "voice-fallback",
            error_code = param("ErrorCode"),
            error_url = param("ErrorUrl"),
            from = param("From").map(mask_phone).as_deref(),
            verified = params.is_some(),
            outcome = "apology",
            latency_us,
            "the voice URL failed; Twilio asked the fallback, the caller got the apology"
        );
        metrics::flush();
        Reply::twiml(safe_twiml(UNREADABLE_FLOWS_MESSAGE).to_xml())
    }
}
