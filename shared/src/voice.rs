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
use crate::telemetry::mask_phone;
use crate::twilio::Params;
use crate::twilio::params::sid;
use crate::webhook::{Acknowledger, Rejection, Reply, WebhookRequest, log_rejection};

/// Said when even the flows could not be read; then the call ends.
pub const UNREADABLE_FLOWS_MESSAGE: &str =
    "We're sorry, we can't take your call right now. Please try again later.";

/// What became of a new call's `call.started` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedEvent {
    Queued,
    /// Not a new call (an action route), or the request lacked the SIDs.
    NotSent,
    Failed,
    TimedOut,
}

/// Built once per cold start; shared by all invocations.
pub struct VoiceWebhook<Q, T> {
    ack: Acknowledger<Q, T>,
    flows: Result<Flows, FlowsError>,
    urls: Urls,
    enqueue_deadline: Duration,
}

impl<Q: EventQueue, T: AuthTokens> VoiceWebhook<Q, T> {
    /// `flows` is taken as loaded, errors included: a bad file must still answer callers.
    pub fn new(
        ack: Acknowledger<Q, T>,
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
            // waiting: the apology reveals nothing and enqueues nothing.
            Err(Rejection::TokensUnavailable(e)) => {
                let problem = format!("auth token unavailable: {e}");
                let reply = self.apology(problem, &Params::default());
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
                match tokio::time::timeout(self.enqueue_deadline, self.ack.enqueue(&envelope)).await
                {
                    Ok(Ok(())) => StartedEvent::Queued,
                    Ok(Err(_)) => StartedEvent::Failed,
                    Err(_) => StartedEvent::TimedOut,
                }
            }
            _ => StartedEvent::NotSent,
        };
        self.finish(answer, Some(&params), event, started)
    }

    fn apology(&self, problem: String, params: &Params) -> Answer {
        match &self.flows {
            Ok(flows) => flows.apology(problem, params, &self.urls).into(),
            Err(_) => Answer::unreadable(),
        }
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
        if matches!(event, StartedEvent::Failed | StartedEvent::TimedOut) {
            metrics::count(name::ENQUEUE_FAILURES, 1);
        }
        match (&answer.problem, event) {
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
            (None, StartedEvent::Failed | StartedEvent::TimedOut) => tracing::error!(
                call_sid, kind = "voice", flow, outcome, from, latency_us, started_event = ?event,
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
        Self {
            xml: safe_twiml(UNREADABLE_FLOWS_MESSAGE).to_xml(),
            flow: String::new(),
            outcome: "apology",
            problem: Some("call flows unreadable".into()),
        }
    }
}
