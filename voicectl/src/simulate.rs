//! The Twilio stand-in: plays calls' status callbacks the way Twilio sends them (real
//! parameter sets, a valid `X-Twilio-Signature` for the URL Twilio was given, an
//! `I-Twilio-Idempotency-Token` per callback, retries on 5xx), with some deliveries
//! duplicated and some calls' callbacks reordered. Seeded, so a run can be replayed.
//! It also keeps the ground truth, to check what the pipeline stored against it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shared::store::CallRecord;
use shared::twilio::signature::compute_signature;
use shared::twilio::{CallStatus, Params};
use time::format_description::well_known::Rfc2822;
use time::{Duration as TimeDelta, OffsetDateTime};

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub calls: usize,
    pub seed: u64,
    /// Calls delivered at once (each call's own callbacks go one after another).
    pub concurrency: usize,
    /// Share of callbacks delivered twice.
    pub duplicate_rate: f64,
    /// Share of calls whose callbacks arrive shuffled.
    pub reorder_rate: f64,
    /// Deliveries of one callback before giving up (Twilio retries on 5xx and timeouts).
    pub max_attempts: u32,
    /// Where requests are sent.
    pub target_url: String,
    /// The URL Twilio was given, which the signature covers.
    pub public_url: String,
    pub account_sid: String,
    pub auth_token: String,
}

/// One status callback of a planned call.
#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    pub status: CallStatus,
    pub sequence_number: u32,
    pub idempotency_token: String,
    pub params: Params,
}

/// A call and the order its callbacks are delivered in (indices into `callbacks`; an index
/// that appears twice is a duplicate delivery).
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedCall {
    pub call_sid: String,
    pub final_status: CallStatus,
    pub callbacks: Vec<Callback>,
    pub delivery_order: Vec<usize>,
    pub reordered: bool,
}

impl SimulatedCall {
    pub fn duplicate_deliveries(&self) -> usize {
        self.delivery_order.len() - self.callbacks.len()
    }
}

/// Plans `options.calls` calls, deterministically from the seed.
pub fn plan(options: &SimulateOptions) -> Vec<SimulatedCall> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let start = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("valid epoch");
    (0..options.calls)
        .map(|i| plan_call(&mut rng, options, start + TimeDelta::seconds(i as i64 * 3)))
        .collect()
}

fn plan_call(
    rng: &mut ChaCha8Rng,
    options: &SimulateOptions,
    started: OffsetDateTime,
) -> SimulatedCall {
    use CallStatus::*;
    let final_status = match rng.random_range(0..100) {
        0..60 => Completed,
        60..70 => Busy,
        70..85 => NoAnswer,
        85..90 => Failed,
        _ => Canceled,
    };
    let statuses: Vec<CallStatus> = match final_status {
        Completed => vec![Initiated, Ringing, InProgress, Completed],
        Failed => vec![Initiated, Failed],
        other => vec![Initiated, Ringing, other],
    };
    let call_sid = format!("CA{:032x}", rng.random::<u128>());
    let inbound = rng.random_bool(0.5);
    let from = format!("+1415555{:04}", rng.random_range(0..10_000));
    let to = format!("+1628555{:04}", rng.random_range(0..10_000));
    let talk_secs = rng.random_range(5..600u32);

    let callbacks: Vec<Callback> = statuses
        .iter()
        .enumerate()
        .map(|(seq, &status)| {
            let at = started + TimeDelta::seconds(seq as i64 * 4);
            let duration = (status == Completed).then_some(talk_secs);
            Callback {
                status,
                sequence_number: seq as u32,
                idempotency_token: format!("{:032x}-{seq}", rng.random::<u128>()),
                params: status_params(
                    &options.account_sid,
                    &call_sid,
                    status,
                    seq as u32,
                    at,
                    &from,
                    &to,
                    inbound,
                    duration,
                ),
            }
        })
        .collect();

    let mut delivery_order: Vec<usize> = (0..callbacks.len()).collect();
    let reordered = rng.random_bool(options.reorder_rate);
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
    SimulatedCall {
        call_sid,
        final_status,
        callbacks,
        delivery_order,
        reordered,
    }
}

/// The parameters Twilio posts to a status callback URL.
#[allow(clippy::too_many_arguments)]
fn status_params(
    account_sid: &str,
    call_sid: &str,
    status: CallStatus,
    seq: u32,
    at: OffsetDateTime,
    from: &str,
    to: &str,
    inbound: bool,
    duration: Option<u32>,
) -> Params {
    let timestamp = at.format(&Rfc2822).expect("RFC 2822 formats any UTC time");
    let mut params: Vec<(String, String)> = [
        ("Called", to),
        ("ToState", "CA"),
        ("CallerCountry", "US"),
        (
            "Direction",
            if inbound { "inbound" } else { "outbound-api" },
        ),
        ("Timestamp", &timestamp),
        ("CallbackSource", "call-progress-events"),
        ("CallerState", "CA"),
        ("ToZip", "94105"),
        ("SequenceNumber", &seq.to_string()),
        ("CallSid", call_sid),
        ("To", to),
        ("CallerZip", "94103"),
        ("ToCountry", "US"),
        ("CalledZip", "94105"),
        ("ApiVersion", "2010-04-01"),
        ("CalledCity", "SAN FRANCISCO"),
        ("CallStatus", status.as_str()),
        ("From", from),
        ("AccountSid", account_sid),
        ("CalledCountry", "US"),
        ("CallerCity", "SAN FRANCISCO"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromCountry", "US"),
        ("Caller", from),
        ("FromCity", "SAN FRANCISCO"),
        ("CalledState", "CA"),
        ("FromZip", "94103"),
        ("FromState", "CA"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if status.is_terminal() {
        let sip = match status {
            CallStatus::Completed => "200",
            CallStatus::Busy => "486",
            CallStatus::NoAnswer | CallStatus::Canceled => "487",
            _ => "500",
        };
        params.push(("SipResponseCode".into(), sip.into()));
    }
    if let Some(secs) = duration {
        params.push(("CallDuration".into(), secs.to_string()));
        params.push(("Duration".into(), secs.div_ceil(60).to_string()));
    }
    Params::new(params)
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub calls: Vec<SimulatedCall>,
    /// Requests that were acknowledged 2xx.
    pub acknowledged: u64,
    pub duplicate_deliveries: u64,
    pub reordered_calls: u64,
    /// Extra attempts after a 5xx, 429 or transport error.
    pub retries: u64,
    /// Callbacks never acknowledged (4xx, or attempts exhausted), with the reason.
    pub undelivered: Vec<String>,
    pub ack_latency_us: Vec<u64>,
    pub elapsed: Duration,
}

impl SimulationReport {
    /// The `p`th percentile of acknowledgement latency, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        percentile(&self.ack_latency_us, p) as f64 / 1000.0
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

struct Delivered {
    latency_us: Vec<u64>,
    retries: u64,
    undelivered: Vec<String>,
}

/// Plans the calls and delivers them.
pub async fn run(options: &SimulateOptions) -> anyhow::Result<SimulationReport> {
    let calls = plan(options);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let started = Instant::now();
    let results: Vec<Delivered> = futures::stream::iter(calls.iter())
        .map(|call| deliver_call(&client, options, call))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut report = SimulationReport {
        acknowledged: 0,
        duplicate_deliveries: calls.iter().map(|c| c.duplicate_deliveries() as u64).sum(),
        reordered_calls: calls.iter().filter(|c| c.reordered).count() as u64,
        retries: 0,
        undelivered: Vec::new(),
        ack_latency_us: Vec::new(),
        elapsed: started.elapsed(),
        calls,
    };
    for result in results {
        report.acknowledged += result.latency_us.len() as u64;
        report.ack_latency_us.extend(result.latency_us);
        report.retries += result.retries;
        report.undelivered.extend(result.undelivered);
    }
    Ok(report)
}

async fn deliver_call(
    client: &reqwest::Client,
    options: &SimulateOptions,
    call: &SimulatedCall,
) -> Delivered {
    let mut delivered = Delivered {
        latency_us: Vec::new(),
        retries: 0,
        undelivered: Vec::new(),
    };
    for &index in &call.delivery_order {
        let callback = &call.callbacks[index];
        let signature = compute_signature(
            &options.auth_token,
            &options.public_url,
            callback.params.iter(),
        );
        let body = callback.params.to_form();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = Instant::now();
            let response = client
                .post(&options.target_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", &signature)
                .header("i-twilio-idempotency-token", &callback.idempotency_token)
                .header("user-agent", "TwilioProxy/1.1")
                .body(body.clone())
                .send()
                .await;
            let latency_us = sent.elapsed().as_micros() as u64;
            let retryable = match &response {
                Ok(r) if r.status().is_success() => {
                    delivered.latency_us.push(latency_us);
                    break;
                }
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(_) => true,
            };
            let why = match response {
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if !retryable || attempt >= options.max_attempts {
                delivered.undelivered.push(format!(
                    "{} {} (seq {}): {why}",
                    call.call_sid, callback.status, callback.sequence_number
                ));
                break;
            }
            delivered.retries += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
        }
    }
    delivered
}

/// How a stored call differs from the ground truth (empty: it matches).
pub fn mismatches(call: &SimulatedCall, record: Option<&CallRecord>) -> Vec<String> {
    let Some(record) = record else {
        return vec![format!("{}: not stored", call.call_sid)];
    };
    let mut problems = Vec::new();
    if record.status.as_deref() != Some(call.final_status.as_str()) {
        problems.push(format!(
            "{}: final status {:?}, expected {}",
            call.call_sid, record.status, call.final_status
        ));
    }
    // Every callback is in the timeline exactly once, applied or late.
    let expected: HashSet<&str> = call
        .callbacks
        .iter()
        .map(|c| c.idempotency_token.as_str())
        .collect();
    let stored: Vec<&str> = record
        .timeline
        .iter()
        .map(|e| e.idempotency_key.as_str())
        .collect();
    let unique: HashSet<&str> = stored.iter().copied().collect();
    if unique.len() != stored.len() {
        problems.push(format!("{}: an event was recorded twice", call.call_sid));
    }
    if unique != expected {
        problems.push(format!(
            "{}: timeline has {} of {} callbacks",
            call.call_sid,
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
        problems.push(format!(
            "{}: applied events went backwards: {applied:?}",
            call.call_sid
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> SimulateOptions {
        SimulateOptions {
            calls: 200,
            seed,
            concurrency: 1,
            duplicate_rate: 0.2,
            reorder_rate: 0.3,
            max_attempts: 3,
            target_url: String::new(),
            public_url: "https://hooks.example/twilio/status".into(),
            account_sid: "AC1".into(),
            auth_token: "t".into(),
        }
    }

    #[test]
    fn plans_are_reproducible_from_the_seed() {
        let a = serde_json::to_string(&plan(&options(7))).unwrap();
        assert_eq!(a, serde_json::to_string(&plan(&options(7))).unwrap());
        assert_ne!(a, serde_json::to_string(&plan(&options(8))).unwrap());
    }

    #[test]
    fn plans_mix_outcomes_duplicates_and_reordering() {
        let calls = plan(&options(1));
        let finals: HashSet<CallStatus> = calls.iter().map(|c| c.final_status).collect();
        assert!(finals.len() >= 4, "{finals:?}");
        let dups: usize = calls.iter().map(SimulatedCall::duplicate_deliveries).sum();
        let reordered = calls.iter().filter(|c| c.reordered).count();
        assert!(
            dups > 50 && reordered > 30,
            "dups {dups} reordered {reordered}"
        );
        for call in &calls {
            let last = call.callbacks.last().unwrap();
            assert_eq!(last.status, call.final_status);
            assert!(
                call.callbacks
                    .iter()
                    .enumerate()
                    .all(|(i, c)| c.sequence_number == i as u32)
            );
            assert!((0..call.callbacks.len()).all(|i| call.delivery_order.contains(&i)));
        }
    }

    #[test]
    fn percentiles_pick_ranks() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 51);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
