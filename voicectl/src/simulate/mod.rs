//! The Twilio stand-in. For each call it does what Twilio does: asks the voice webhook what
//! to do, follows the TwiML (pressing keys at a Gather, ringing and answering or not at a
//! Dial, leaving a message at a Record; see [`call`]), then sends every callback the number
//! and the TwiML asked for: status callbacks of the caller's call and of every dialled leg,
//! recording and transcription callbacks. Requests carry real parameter sets, a valid
//! `X-Twilio-Signature` for the URL Twilio was given and an `I-Twilio-Idempotency-Token`, and
//! are delivered as Twilio delivers them ([`delivery`]): attempts, timeouts and retries as
//! each URL's connection overrides say, Twilio's defaults without them; a failed voice
//! request goes to the number's fallback URL. Some deliveries are duplicated and some legs'
//! callbacks reordered. Seeded, so a run can be replayed. It keeps the ground truth, to
//! check what the pipeline stored against it.

pub mod call;
pub mod delivery;
pub mod softphone;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use time::format_description::well_known::Rfc2822;
use time::{Duration as TimeDelta, OffsetDateTime};
use voicehooks::calls::CallRecord;
use voicehooks::config::local;
use voicehooks::events::{Envelope, EventKind};
use voicehooks::flows::Flows;
use voicehooks::twilio::overrides::{self, Failure};
use voicehooks::twilio::signature::compute_signature;
use voicehooks::twilio::{CallStatus, Params};

pub use call::{Conversation, Leg, NumberUrls, Requested, Script, VoiceFailure, VoiceServer};
pub use delivery::{Deliverer, Delivery, FragmentSigning};
pub use softphone::SoftphoneSignIn;

use crate::media_server::{MediaServer, Recording as StagedRecording};

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub calls: usize,
    pub seed: u64,
    /// Calls played at once (each call's own requests go one after another).
    pub concurrency: usize,
    /// Share of callbacks delivered twice.
    pub duplicate_rate: f64,
    /// Share of legs whose status callbacks arrive shuffled.
    pub reorder_rate: f64,
    /// The public base URL Twilio was given: the numbers' URLs are the stack's outputs under
    /// it, with their connection overrides ([`SimulateOptions::number_urls`]). Signatures
    /// cover these URLs.
    pub public_base_url: String,
    /// Whether the numbers have the stack's `VoiceFallbackUrl` configured.
    pub voice_fallback: bool,
    /// Which URL the stand-in signs when it has a fragment (Twilio does not say).
    pub fragment_signing: FragmentSigning,
    /// How a public URL reaches its function: (public prefix, delivery prefix), as API
    /// Gateway routes. Empty: deliver to the public URL itself (a deployed stack). A
    /// callback whose URL has no route is noted as unrouted, not sent.
    pub routes: Vec<(String, String)>,
    /// The numbers callers dial. Some calls also dial a number not in the list.
    pub numbers: Vec<String>,
    /// Share of calls placed from a browser softphone (`client:` caller) instead.
    pub softphone_rate: f64,
    /// How those softphones sign in first (`None`: they are taken as signed in).
    pub softphone: Option<SoftphoneSignIn>,
    pub account_sid: String,
    pub auth_token: String,
    /// Share of recordings whose media answers 404 at first (Twilio's "not ready yet" right
    /// after the callback); only with a media server.
    pub media_not_ready_rate: f64,
    /// How many fetches of such a recording answer 404 before the media is served.
    pub media_not_ready_tries: usize,
    /// The stand-in serves at most this much audio per recording, so a demo of hundreds of
    /// calls stays small in the emulator; the callback still reports the real duration.
    pub max_media_secs: u32,
    /// Calls started per second at most; `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Share of status callbacks held back before delivery (Twilio's queues lag), by up to
    /// `max_delay`.
    pub delay_rate: f64,
    pub max_delay: Duration,
}

impl Default for SimulateOptions {
    /// The local stack's stand-in: its URL, account and token, the built-in numbers.
    fn default() -> Self {
        Self {
            calls: 20,
            seed: 1,
            concurrency: 8,
            duplicate_rate: 0.1,
            reorder_rate: 0.2,
            public_base_url: local::PUBLIC_BASE_URL.into(),
            voice_fallback: true,
            fragment_signing: FragmentSigning::Either { seed: 1 },
            routes: Vec::new(),
            numbers: Flows::built_in()
                .map(|flows| flows.numbers().map(|(n, _)| n.to_owned()).collect())
                .unwrap_or_default(),
            softphone_rate: 0.1,
            softphone: None,
            account_sid: local::ACCOUNT_SID.into(),
            auth_token: local::AUTH_TOKEN.into(),
            media_not_ready_rate: 0.2,
            media_not_ready_tries: 1,
            max_media_secs: 20,
            rate: None,
            delay_rate: 0.0,
            max_delay: Duration::from_secs(2),
        }
    }
}

impl SimulateOptions {
    /// The URLs the numbers are configured with: the template's outputs under the public
    /// base URL, each with its connection overrides.
    pub fn number_urls(&self) -> NumberUrls {
        let base = self.public_base_url.trim_end_matches('/');
        NumberUrls {
            voice: format!("{base}/twilio/voice#{}", overrides::VOICE),
            fallback: self
                .voice_fallback
                .then(|| format!("{base}{}#{}", overrides::FALLBACK_PATH, overrides::FALLBACK)),
            status_callback: format!("{base}/twilio/status#{}", overrides::CALLBACK),
        }
    }
}

/// One callback of a leg.
#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    pub status: CallStatus,
    pub sequence_number: u32,
    /// The URL Twilio was given for it.
    pub url: String,
    pub idempotency_token: String,
    pub params: Params,
}

/// A leg and the order its status callbacks are delivered in (indices into `callbacks`; an
/// index that appears twice is a duplicate delivery).
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedLeg {
    pub leg: Leg,
    pub callbacks: Vec<Callback>,
    pub delivery_order: Vec<usize>,
    /// Milliseconds each delivery (as `delivery_order`) is held back first.
    pub delays_ms: Vec<u64>,
    pub reordered: bool,
}

impl SimulatedLeg {
    pub fn call_sid(&self) -> &str {
        &self.leg.call_sid
    }

    pub fn final_status(&self) -> CallStatus {
        self.leg.final_status()
    }

    pub fn duplicate_deliveries(&self) -> usize {
        self.delivery_order.len() - self.callbacks.len()
    }
}

/// A call: its script, how the voice webhook steered it, and its legs' callbacks.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedCall {
    pub script: Script,
    pub conversation: Conversation,
    /// The caller's leg first, then every dialled leg.
    pub legs: Vec<SimulatedLeg>,
}

impl SimulatedCall {
    pub fn call_sid(&self) -> &str {
        &self.script.call_sid
    }
}

/// The scripts of `options.calls` calls, deterministically from the seed.
pub fn plan(options: &SimulateOptions) -> Vec<Script> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    (0..options.calls)
        .map(|_| script(&mut rng, options))
        .collect()
}

fn script(rng: &mut ChaCha8Rng, options: &SimulateOptions) -> Script {
    let call_sid = format!("CA{:032x}", rng.random::<u128>());
    let caller = format!("+1628555{:04}", rng.random_range(0..10_000));
    let (from, to) = if rng.random_bool(options.softphone_rate) {
        let agent = format!("client:agent-{}", rng.random_range(1..20));
        (agent, caller)
    } else {
        let to = match options.numbers.len() {
            n if n > 0 && rng.random_bool(0.9) => options.numbers[rng.random_range(0..n)].clone(),
            // A number nobody configured: the default route answers it.
            _ => format!("+1415555{:04}", rng.random_range(9000..10_000)),
        };
        (caller, to)
    };
    let gathers = (0..3)
        .map(|_| match rng.random_range(0..100) {
            0..60 => rng.random_range(1..=4).to_string(),
            60..75 => "9".to_owned(),
            _ => String::new(),
        })
        .collect();
    let dials = (0..2)
        .map(|_| match rng.random_range(0..100) {
            0..55 => CallStatus::Completed,
            55..70 => CallStatus::Busy,
            70..90 => CallStatus::NoAnswer,
            _ => CallStatus::Failed,
        })
        .collect();
    Script {
        call_sid,
        from,
        to,
        gathers,
        dials,
        talk_secs: rng.random_range(5..300),
        sid_seed: rng.random(),
    }
}

/// A leg's status callbacks: one per status whose event was asked for (the final status is
/// always sent), numbered in the order Twilio sends them; then the faults.
fn leg_callbacks(
    rng: &mut ChaCha8Rng,
    options: &SimulateOptions,
    leg: Leg,
    started: OffsetDateTime,
) -> SimulatedLeg {
    let Some(url) = leg.status_callback.clone() else {
        return SimulatedLeg {
            leg,
            callbacks: Vec::new(),
            delivery_order: Vec::new(),
            delays_ms: Vec::new(),
            reordered: false,
        };
    };
    let wanted = |status: CallStatus| {
        let event = match status {
            CallStatus::Queued | CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "answered",
            _ => return true,
        };
        leg.events.iter().any(|e| e == event)
    };
    let callbacks: Vec<Callback> = leg
        .statuses
        .iter()
        .copied()
        .filter(|&s| wanted(s))
        .enumerate()
        .map(|(seq, status)| Callback {
            status,
            sequence_number: seq as u32,
            url: url.clone(),
            idempotency_token: format!("{:032x}-{seq}", rng.random::<u128>()),
            params: status_params(
                &options.account_sid,
                &leg,
                status,
                seq as u32,
                started + TimeDelta::seconds(seq as i64 * 4),
            ),
        })
        .collect();
    let mut delivery_order: Vec<usize> = (0..callbacks.len()).collect();
    let reordered = callbacks.len() > 1 && rng.random_bool(options.reorder_rate);
    if reordered {
        // A shuffle that leaves everything in place is not a reordering.
        while delivery_order.windows(2).all(|w| w[0] < w[1]) {
            delivery_order.shuffle(rng);
        }
    }
    for index in 0..callbacks.len() {
        if rng.random_bool(options.duplicate_rate) {
            let at = rng.random_range(0..=delivery_order.len());
            delivery_order.insert(at, index);
        }
    }
    // Drawn only when asked for, so that a seed plays the same calls as before delays were.
    let max_delay_ms = options.max_delay.as_millis() as u64;
    let delays_ms = delivery_order
        .iter()
        .map(|_| {
            if options.delay_rate > 0.0 && rng.random_bool(options.delay_rate.min(1.0)) {
                rng.random_range(1..=max_delay_ms.max(1))
            } else {
                0
            }
        })
        .collect();
    SimulatedLeg {
        leg,
        callbacks,
        delivery_order,
        delays_ms,
        reordered,
    }
}

/// Places a call's room events in time (`Timestamp`: the join and start when the call is
/// answered, the leave and end `talk_secs` later), and on a share of calls
/// (`reorder_rate`) delivers them shuffled: a room's callbacks race each other like a call's.
fn stamp_room_events(
    rng: &mut ChaCha8Rng,
    options: &SimulateOptions,
    conversation: &mut Conversation,
    call_started: OffsetDateTime,
    script: &Script,
) {
    let rooms: Vec<usize> = (0..conversation.requested.len())
        .filter(|&i| {
            conversation.requested[i]
                .params
                .get("ConferenceSid")
                .is_some()
        })
        .collect();
    if rooms.is_empty() {
        return;
    }
    let answered = call_started + TimeDelta::seconds(4);
    for &i in &rooms {
        let requested = &mut conversation.requested[i];
        let event = requested
            .params
            .get("StatusCallbackEvent")
            .unwrap_or_default();
        let at = match event {
            "participant-join" | "conference-start" => answered,
            _ => answered + TimeDelta::seconds(i64::from(script.talk_secs)),
        };
        let timestamp = at.format(&Rfc2822).expect("RFC 2822 formats any UTC time");
        requested.params = requested
            .params
            .iter()
            .chain([("Timestamp", timestamp.as_str())])
            .collect();
    }
    if rooms.len() > 1 && rng.random_bool(options.reorder_rate) {
        let mut events: Vec<Requested> = rooms
            .iter()
            .map(|&i| conversation.requested[i].clone())
            .collect();
        let in_order = |events: &[Requested]| {
            events.windows(2).all(|w| {
                let seq = |r: &Requested| {
                    r.params
                        .get("SequenceNumber")
                        .and_then(|n| n.parse::<u32>().ok())
                };
                seq(&w[0]) < seq(&w[1])
            })
        };
        while in_order(&events) {
            events.shuffle(rng);
        }
        for (&i, event) in rooms.iter().zip(events) {
            conversation.requested[i] = event;
        }
    }
}

/// The parameters Twilio posts to a status callback URL.
fn status_params(
    account_sid: &str,
    leg: &Leg,
    status: CallStatus,
    seq: u32,
    at: OffsetDateTime,
) -> Params {
    let timestamp = at.format(&Rfc2822).expect("RFC 2822 formats any UTC time");
    let direction = if leg.parent_call_sid.is_some() {
        "outbound-dial"
    } else {
        "inbound"
    };
    let mut params: Vec<(String, String)> = [
        ("Called", leg.to.as_str()),
        ("ToState", "CA"),
        ("CallerCountry", "US"),
        ("Direction", direction),
        ("Timestamp", &timestamp),
        ("CallbackSource", "call-progress-events"),
        ("CallerState", "CA"),
        ("ToZip", "94105"),
        ("SequenceNumber", &seq.to_string()),
        ("CallSid", &leg.call_sid),
        ("To", &leg.to),
        ("CallerZip", "94103"),
        ("ToCountry", "US"),
        ("CalledZip", "94105"),
        ("ApiVersion", "2010-04-01"),
        ("CalledCity", "SAN FRANCISCO"),
        ("CallStatus", status.as_str()),
        ("From", &leg.from),
        ("AccountSid", account_sid),
        ("CalledCountry", "US"),
        ("CallerCity", "SAN FRANCISCO"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromCountry", "US"),
        ("Caller", &leg.from),
        ("FromCity", "SAN FRANCISCO"),
        ("CalledState", "CA"),
        ("FromZip", "94103"),
        ("FromState", "CA"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(parent) = &leg.parent_call_sid {
        params.push(("ParentCallSid".into(), parent.clone()));
    }
    if status.is_terminal() {
        let sip = match status {
            CallStatus::Completed => "200",
            CallStatus::Busy => "486",
            CallStatus::NoAnswer | CallStatus::Canceled => "487",
            _ => "500",
        };
        params.push(("SipResponseCode".into(), sip.into()));
    }
    if status == CallStatus::Completed {
        params.push(("CallDuration".into(), leg.talk_secs.to_string()));
        params.push(("Duration".into(), leg.talk_secs.div_ceil(60).to_string()));
    }
    Params::new(params)
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub calls: Vec<SimulatedCall>,
    /// Callbacks acknowledged 2xx (status, recording, transcription).
    pub acknowledged: u64,
    pub duplicate_deliveries: u64,
    pub reordered_legs: u64,
    /// Callback retries Twilio made, by what failed (`ct`, `rt`, `4xx`, `5xx`): only those
    /// the URL's retry policy names.
    pub retries: BTreeMap<&'static str, u64>,
    /// Callback deliveries held back before sending.
    pub delayed: u64,
    /// Callbacks Twilio gave up on (a failure its policy does not retry, or attempts or time
    /// exhausted), with the reason: events lost unless the stack stored them anyway.
    pub gave_up: Vec<String>,
    /// Callback URLs the TwiML asked for that no route serves (not sent).
    pub unrouted: Vec<String>,
    /// Voice requests that failed and went to the fallback URL.
    pub voice_fallbacks: Vec<String>,
    /// Calls whose caller heard Twilio's application error (a voice request failed with no
    /// fallback, or the fallback failed too).
    pub voice_errors: Vec<String>,
    /// Every callback acknowledged 2xx: when its answered attempt was sent, and how long
    /// the answer took.
    pub acks: Vec<Ack>,
    pub voice_latency_us: Vec<u64>,
    /// Softphone calls placed after their Access Token was minted and accepted.
    pub softphone_sign_ins: u64,
    /// Softphone calls never placed: the token request failed or Twilio would refuse the
    /// token (the reason each).
    pub sign_in_failures: Vec<String>,
    pub elapsed: Duration,
}

impl SimulationReport {
    /// The `p`th percentile of callback acknowledgement latency, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        let latencies: Vec<u64> = self.acks.iter().map(|a| a.latency_us).collect();
        percentile(&latencies, p) as f64 / 1000.0
    }

    /// The `p`th percentile of the latency of callbacks sent within `window`, in
    /// milliseconds, and how many there were.
    pub fn latency_ms_within(&self, window: std::ops::Range<Instant>, p: f64) -> (f64, usize) {
        let latencies: Vec<u64> = self
            .acks
            .iter()
            .filter(|a| window.contains(&a.sent_at))
            .map(|a| a.latency_us)
            .collect();
        (percentile(&latencies, p) as f64 / 1000.0, latencies.len())
    }

    /// The `p`th percentile of voice webhook (TwiML) latency, in milliseconds.
    pub fn voice_latency_ms(&self, p: f64) -> f64 {
        percentile(&self.voice_latency_us, p) as f64 / 1000.0
    }

    pub fn legs(&self) -> impl Iterator<Item = &SimulatedLeg> {
        self.calls.iter().flat_map(|c| c.legs.iter())
    }

    pub fn status_callbacks(&self) -> usize {
        self.legs().map(|l| l.callbacks.len()).sum()
    }

    /// Every callback retry, whatever its cause.
    pub fn total_retries(&self) -> u64 {
        self.retries.values().sum()
    }

    /// The retries by cause, e.g. `5xx 3, rt 1`, or `none`.
    pub fn retries_summary(&self) -> String {
        if self.retries.is_empty() {
            return "none".into();
        }
        self.retries
            .iter()
            .map(|(cause, n)| format!("{cause} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn percentile(samples: &[u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Signs and sends requests the way Twilio does, to wherever the routes say.
pub struct Twilio {
    client: reqwest::Client,
    routes: Vec<(String, String)>,
    auth_token: String,
    deliverer: Deliverer,
}

impl Twilio {
    pub fn new(options: &SimulateOptions) -> anyhow::Result<Self> {
        let mut twilio = Self::with_routes(
            options.routes.clone(),
            &options.auth_token,
            Duration::from_secs(15),
        )?;
        twilio.deliverer = Deliverer::new(&options.auth_token, options.fragment_signing);
        Ok(twilio)
    }

    /// Sends to `routes` (none: to the public URLs themselves), signing with `auth_token`;
    /// [`Twilio::post`] gives up on an answer after `timeout`. Delivery as Twilio makes it,
    /// retries and all, is [`Twilio::deliver`].
    pub fn with_routes(
        routes: Vec<(String, String)>,
        auth_token: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            routes,
            auth_token: auth_token.to_owned(),
            deliverer: Deliverer::new(auth_token, FragmentSigning::Either { seed: 0 }),
        })
    }

    /// Where a public URL is delivered: the longest matching route, at a path boundary. The
    /// fragment (the connection overrides) is Twilio's to read, never sent.
    pub fn target(&self, public_url: &str) -> Option<String> {
        let public_url = public_url
            .split_once('#')
            .map_or(public_url, |(url, _)| url);
        if self.routes.is_empty() {
            return Some(public_url.to_owned());
        }
        self.routes
            .iter()
            .filter(|(public, _)| {
                public_url
                    .strip_prefix(public.as_str())
                    .is_some_and(|rest| {
                        rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
                    })
            })
            .max_by_key(|(public, _)| public.len())
            .map(|(public, target)| format!("{target}{}", &public_url[public.len()..]))
    }

    /// One signed POST, no retries (the operator's replays and smoke calls); the response
    /// and how long it took.
    pub async fn post(
        &self,
        target: &str,
        public_url: &str,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> (reqwest::Result<reqwest::Response>, u64) {
        let signature = compute_signature(&self.auth_token, public_url, params.iter());
        let request =
            delivery::twilio_request(&self.client, target, &signature, params, idempotency_token);
        let sent = Instant::now();
        let response = request.send().await;
        (response, sent.elapsed().as_micros() as u64)
    }

    /// Delivers as Twilio does: the URL's overrides decide attempts, timeouts and retries.
    /// `None`: no route serves the URL.
    pub async fn deliver(
        &self,
        public_url: &str,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Option<Delivery> {
        let target = self.target(public_url)?;
        Some(
            self.deliverer
                .deliver(&target, public_url, params, idempotency_token)
                .await,
        )
    }
}

impl VoiceServer for Twilio {
    async fn ask(&self, url: &str, params: &Params) -> Result<(String, u64), VoiceFailure> {
        let failed = |error_code, why| VoiceFailure { error_code, why };
        let delivery = self
            .deliver(url, params, None)
            .await
            .ok_or_else(|| failed(11200, format!("no route for {url}")))?;
        match delivery.result {
            // Twilio reads TwiML from a 200 only.
            Ok(answer) if answer.status == 200 => Ok((answer.body, answer.latency_us)),
            Ok(answer) => Err(failed(11200, format!("HTTP {}", answer.status))),
            Err(gave_up) => Err(failed(
                if gave_up.failure == Some(Failure::Connect) {
                    11205
                } else {
                    11200
                },
                format!("{} after {} attempt(s)", gave_up.why, delivery.attempts),
            )),
        }
    }
}

/// One callback Twilio got its 2xx for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ack {
    /// When the attempt that was answered was sent.
    #[serde(skip_serializing)]
    pub sent_at: Instant,
    pub latency_us: u64,
}

#[derive(Default)]
struct Delivered {
    acks: Vec<Ack>,
    retries: BTreeMap<&'static str, u64>,
    delayed: u64,
    gave_up: Vec<String>,
    unrouted: Vec<String>,
}

/// Plans the calls and plays them, with recording URLs on Twilio's API (not served).
pub async fn run(options: &SimulateOptions) -> anyhow::Result<SimulationReport> {
    run_with_media(options, None, &ProgressBar::hidden()).await
}

/// What Twilio's REST API then lists: every leg as a Call with its final status, every
/// recording as a Recording (what reconciliation reads).
fn list_in_rest_api(media: &MediaServer, conversation: &Conversation, account_sid: &str) {
    let provisioned = media.provisioned();
    for (i, leg) in conversation.legs.iter().enumerate() {
        provisioned.add_call(
            account_sid,
            &crate::twilio_api::CallResource {
                sid: leg.call_sid.clone(),
                parent_call_sid: leg.parent_call_sid.clone(),
                status: leg.final_status().as_str().to_owned(),
                from: leg.from.clone(),
                to: leg.to.clone(),
                direction: if i == 0 { "inbound" } else { "outbound-dial" }.to_owned(),
                duration: if leg.final_status() == CallStatus::Completed {
                    leg.talk_secs
                } else {
                    0
                },
            },
        );
    }
    for requested in &conversation.requested {
        let param = |name: &str| requested.params.get(name).unwrap_or_default();
        if param("RecordingStatus") != "completed"
            || requested.params.get("TranscriptionSid").is_some()
        {
            continue;
        }
        provisioned.add_recording(
            account_sid,
            param("CallSid"),
            param("RecordingSid"),
            (
                param("RecordingDuration").parse().unwrap_or(1),
                param("RecordingChannels").parse().unwrap_or(1),
            ),
            param("RecordingUrl"),
        );
    }
}

/// Puts each recording the calls made on `media` (some not ready at first) and points its
/// callbacks' `RecordingUrl` there, as Twilio's API would serve it.
fn stage_media(
    media: &MediaServer,
    conversation: &mut Conversation,
    rng: &mut ChaCha8Rng,
    options: &SimulateOptions,
) {
    for requested in &mut conversation.requested {
        let Some(sid) = requested.params.get("RecordingSid").map(str::to_owned) else {
            continue;
        };
        let param = |name: &str| requested.params.get(name).unwrap_or_default();
        let recording = StagedRecording::new(
            param("RecordingDuration")
                .parse()
                .unwrap_or(1)
                .clamp(1, options.max_media_secs.max(1)),
            param("RecordingChannels").parse().unwrap_or(1),
        );
        // A transcription callback names the recording again: it is already staged.
        if requested.params.get("TranscriptionSid").is_none() {
            let faults = if rng.random_bool(options.media_not_ready_rate) {
                vec![404; options.media_not_ready_tries]
            } else {
                Vec::new()
            };
            media.add(&sid, recording.with_faults(&faults));
        }
        requested.params = Params::new(
            requested
                .params
                .iter()
                .map(|(k, v)| {
                    let v = if k == "RecordingUrl" {
                        media.recording_url(&sid)
                    } else {
                        v.to_owned()
                    };
                    (k.to_owned(), v)
                })
                .collect(),
        );
    }
}

/// Plans the calls and plays them; recordings are served by `media` when given. `progress`
/// counts calls played to the end (every callback delivered or given up on).
pub async fn run_with_media(
    options: &SimulateOptions,
    media: Option<&MediaServer>,
    progress: &ProgressBar,
) -> anyhow::Result<SimulationReport> {
    progress.inc_length(options.calls as u64);
    let player = &Player {
        options,
        media,
        twilio: Twilio::new(options)?,
        number: options.number_urls(),
        start: OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("valid epoch"),
        started: Instant::now(),
    };
    let results: Vec<Result<(SimulatedCall, Delivered), String>> =
        futures::stream::iter(plan(options).into_iter().enumerate())
            .map(|(i, script)| async move {
                let played = player.play(i, script).await;
                progress.inc(1);
                played
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
    Ok(SimulationReport::of(
        results,
        options,
        player.started.elapsed(),
    ))
}

/// What every call of a run is played with.
struct Player<'a> {
    options: &'a SimulateOptions,
    media: Option<&'a MediaServer>,
    twilio: Twilio,
    number: NumberUrls,
    /// The first call's timestamp on Twilio's clock (fixed, so runs compare).
    start: OffsetDateTime,
    started: Instant,
}

impl Player<'_> {
    /// Call `i` of the plan, at its due time: a softphone signs in first, the caller follows
    /// the voice webhook's TwiML, the recordings are staged, then every callback goes out.
    async fn play(&self, i: usize, script: Script) -> Result<(SimulatedCall, Delivered), String> {
        let options = self.options;
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            let due = self.started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if let (Some(sign_in), Some(identity)) =
            (&options.softphone, script.from.strip_prefix("client:"))
            && let Err(why) = sign_in.sign_in(identity).await
        {
            return Err(format!("{} ({}): {why}", script.call_sid, script.from));
        }
        let mut conversation =
            call::play(&self.twilio, &script, &self.number, &options.account_sid).await;
        // The faults come from the call's own seed, so they do not depend on timing.
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ (script.sid_seed as u64));
        if let Some(media) = self.media {
            stage_media(media, &mut conversation, &mut rng, options);
            list_in_rest_api(media, &conversation, &options.account_sid);
        }
        let at = self.start + TimeDelta::seconds(i as i64 * 3);
        let legs = std::mem::take(&mut conversation.legs)
            .into_iter()
            .map(|leg| leg_callbacks(&mut rng, options, leg, at))
            .collect();
        stamp_room_events(&mut rng, options, &mut conversation, at, &script);
        let call = SimulatedCall {
            script,
            conversation,
            legs,
        };
        let delivered = deliver_call(&self.twilio, &call).await;
        Ok((call, delivered))
    }
}

impl SimulationReport {
    /// The run's figures from each call played (or the reason its softphone never placed it).
    fn of(
        results: Vec<Result<(SimulatedCall, Delivered), String>>,
        options: &SimulateOptions,
        elapsed: Duration,
    ) -> Self {
        let mut report = SimulationReport {
            calls: Vec::new(),
            acknowledged: 0,
            duplicate_deliveries: 0,
            reordered_legs: 0,
            retries: BTreeMap::new(),
            delayed: 0,
            gave_up: Vec::new(),
            unrouted: Vec::new(),
            voice_fallbacks: Vec::new(),
            voice_errors: Vec::new(),
            acks: Vec::new(),
            voice_latency_us: Vec::new(),
            softphone_sign_ins: 0,
            sign_in_failures: Vec::new(),
            elapsed,
        };
        for result in results {
            match result {
                Ok((call, delivered)) => report.add(call, delivered, options),
                Err(why) => report.sign_in_failures.push(why),
            }
        }
        // Completion order depends on timing; the report does not.
        report
            .calls
            .sort_by(|a, b| a.script.call_sid.cmp(&b.script.call_sid));
        report.duplicate_deliveries = report.legs().map(|l| l.duplicate_deliveries() as u64).sum();
        report.reordered_legs = report.legs().filter(|l| l.reordered).count() as u64;
        report
    }

    fn add(&mut self, call: SimulatedCall, delivered: Delivered, options: &SimulateOptions) {
        if options.softphone.is_some() && call.script.from.starts_with("client:") {
            self.softphone_sign_ins += 1;
        }
        self.acknowledged += delivered.acks.len() as u64;
        self.acks.extend(delivered.acks);
        for (cause, n) in delivered.retries {
            *self.retries.entry(cause).or_default() += n;
        }
        self.delayed += delivered.delayed;
        self.gave_up.extend(delivered.gave_up);
        self.unrouted.extend(delivered.unrouted);
        self.voice_fallbacks
            .extend(call.conversation.fallbacks.iter().cloned());
        self.voice_errors
            .extend(call.conversation.errors.iter().cloned());
        self.voice_latency_us
            .extend(&call.conversation.voice_latency_us);
        self.calls.push(call);
    }
}

/// Every callback of a call: each leg's status callbacks in their delivery order, then the
/// recording and transcription callbacks.
async fn deliver_call(twilio: &Twilio, call: &SimulatedCall) -> Delivered {
    let mut delivered = Delivered::default();
    let status = call.legs.iter().flat_map(|leg| {
        leg.delivery_order
            .iter()
            .zip(&leg.delays_ms)
            .map(|(&i, &delay_ms)| {
                let c = &leg.callbacks[i];
                let what = format!(
                    "{} {} (seq {})",
                    leg.call_sid(),
                    c.status,
                    c.sequence_number
                );
                (
                    c.url.as_str(),
                    &c.params,
                    Some(c.idempotency_token.as_str()),
                    what,
                    delay_ms,
                )
            })
    });
    let requested = call.conversation.requested.iter().map(|r| {
        let what = format!("{} {}", call.call_sid(), r.url);
        (r.url.as_str(), &r.params, None, what, 0)
    });
    for (url, params, token, what, delay_ms) in status.chain(requested).collect::<Vec<_>>() {
        if delay_ms > 0 {
            delivered.delayed += 1;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        let Some(delivery) = twilio.deliver(url, params, token).await else {
            delivered.unrouted.push(url.to_owned());
            continue;
        };
        for failure in &delivery.retried {
            *delivered.retries.entry(failure.as_str()).or_default() += 1;
        }
        match delivery.result {
            Ok(answer) => delivered.acks.push(Ack {
                sent_at: Instant::now() - Duration::from_micros(answer.latency_us),
                latency_us: answer.latency_us,
            }),
            Err(gave_up) => delivered.gave_up.push(format!(
                "{what}: {} (after {} attempt(s))",
                gave_up.why, delivery.attempts
            )),
        }
    }
    delivered
}

/// How a stored leg differs from the ground truth (empty: it matches).
pub fn mismatches(leg: &SimulatedLeg, record: Option<&CallRecord>) -> Vec<String> {
    let sid = leg.call_sid();
    let Some(record) = record else {
        return vec![format!("{sid}: not stored")];
    };
    let mut problems = Vec::new();
    if record.status.as_deref() != Some(leg.final_status().as_str()) {
        problems.push(format!(
            "{sid}: final status {:?}, expected {}",
            record.status,
            leg.final_status()
        ));
    }
    // Every callback is in the timeline exactly once, applied or late, under the key its
    // signed params make (what the webhook derives, whatever token a delivery carried).
    let keys: Vec<String> = leg
        .callbacks
        .iter()
        .filter_map(|c| {
            Envelope::from_callback(EventKind::CallStatus, &c.params, None)
                .ok()
                .map(|e| e.idempotency_key)
        })
        .collect();
    let expected: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let stored: Vec<&str> = record
        .timeline
        .iter()
        .map(|e| e.idempotency_key.as_str())
        .collect();
    let unique: HashSet<&str> = stored.iter().copied().collect();
    if unique.len() != stored.len() {
        problems.push(format!("{sid}: an event was recorded twice"));
    }
    if unique != expected {
        problems.push(format!(
            "{sid}: timeline has {} of {} callbacks",
            unique.intersection(&expected).count(),
            expected.len()
        ));
    }
    // What was applied only ever moved forward.
    let applied: Vec<(u8, i64)> = record
        .timeline
        .iter()
        .filter(|e| e.applied)
        .map(|e| {
            let rank = e
                .status
                .parse::<CallStatus>()
                .map_or(u8::MAX, CallStatus::rank);
            (rank, e.sequence_number.unwrap_or(-1))
        })
        .collect();
    if applied.windows(2).any(|w| w[0] >= w[1]) {
        problems.push(format!("{sid}: applied events went backwards: {applied:?}"));
    }
    problems
}

#[cfg(test)]
mod tests;
