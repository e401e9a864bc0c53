//! CloudWatch metrics in the embedded metric format (EMF): one JSON line per invocation on
//! stdout, which Lambda's log pipeline turns into metrics. No `PutMetricData` call, so no
//! latency on the ack path and no client to build at cold start.
//! Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//!
//! Code records where an outcome is known ([`count`], [`millis`], [`bytes()`]); the entry
//! point of each invocation ([`crate::webhook`]'s acknowledge, the voice answer, the
//! workers' batch functions) calls [`flush`] once at its end. A Lambda instance serves one
//! invocation at a time, so the process-wide recorder holds exactly that invocation's
//! figures. Written by hand: the EMF crates pull in the `metrics` facade and a background
//! task for what is one `serde_json` object.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

/// The CloudWatch namespace of every metric; the template's dashboard and alarms use it.
pub const NAMESPACE: &str = "Voicehooks";
/// Where the stack's name comes from (the template sets it on every function).
pub const STACK_ENV: &str = "VOICEHOOKS_STACK_NAME";

/// The metric names, one place for the code, the template and docs/OPERATIONS.md.
pub mod name {
    pub const ACK_LATENCY: &str = "AckLatency";
    pub const ACCEPTED: &str = "WebhooksAccepted";
    pub const SIGNATURE_FAILURES: &str = "SignatureFailures";
    pub const BAD_REQUESTS: &str = "BadRequests";
    pub const ENQUEUE_FAILURES: &str = "EnqueueFailures";
    pub const TWIML_LATENCY: &str = "TwimlLatency";
    pub const EVENTS_APPLIED: &str = "EventsApplied";
    pub const EVENTS_DUPLICATE: &str = "EventsDuplicate";
    pub const EVENTS_LATE: &str = "EventsLate";
    pub const EVENTS_RETRIED: &str = "EventsRetried";
    /// Conference room events the status worker kept, whatever their outcome (the three
    /// above count call events: a room event costs two writes and a query, a call event one).
    pub const CONFERENCE_EVENTS: &str = "ConferenceEvents";
    /// A participant's call linked to its room (one write each).
    pub const CONFERENCE_LINKS: &str = "ConferenceLinks";
    pub const POISON_MESSAGES: &str = "PoisonMessages";
    pub const DEAD_LETTERED: &str = "MessagesDeadLettered";
    pub const RECORDINGS_ARCHIVED: &str = "RecordingsArchived";
    pub const RECORDING_BYTES: &str = "RecordingBytes";
    pub const TRANSCRIPTIONS_COMPLETED: &str = "TranscriptionsCompleted";
    pub const TRANSCRIPTIONS_FAILED: &str = "TranscriptionsFailed";
    /// SQS did not take an accepted event in time; it went to the spill (still 2xx).
    pub const EVENTS_SPILLED: &str = "EventsSpilled";
    /// A webhook instance's queue breaker opened (SQS failed it several times in a row).
    pub const BREAKER_OPENED: &str = "QueueBreakerOpened";
    /// ... and closed again (a probe went through).
    pub const BREAKER_CLOSED: &str = "QueueBreakerClosed";
    /// Events spilled with the breaker open, without asking SQS (counted in EventsSpilled too).
    pub const BREAKER_SPILLS: &str = "EventsSpilledBreakerOpen";
    /// Callbacks accepted before their signature could be checked (no auth token at a cold
    /// start): spilled unverified, for the drainer to check.
    pub const EVENTS_DEFERRED: &str = "EventsDeferred";
    /// ... checked by the drainer and queued.
    pub const DEFERRED_VERIFIED: &str = "DeferredVerified";
    /// ... refused by the drainer (bad signature or params) and deleted.
    pub const DEFERRED_REFUSED: &str = "DeferredRefused";
    /// Spilled events the drainer put on their queue.
    pub const SPILL_DRAINED: &str = "SpillDrained";
    /// Spilled events still waiting after a drain.
    pub const SPILL_DEPTH: &str = "SpillDepth";
    /// Signatures checked with tokens older than their TTL: Secrets Manager could not be read.
    pub const TOKENS_STALE: &str = "TokensServedStale";
    /// Voice requests Twilio sent to the fallback URL (the voice URL failed).
    pub const VOICE_FALLBACKS: &str = "VoiceFallbacks";
    /// Events a call's timeline had no room for (applied or counted, not listed).
    pub const TIMELINE_OVERFLOW: &str = "TimelineOverflow";
    /// Messages a worker was still working on when its invocation's deadline came (retried).
    pub const CUT_OFF: &str = "MessagesCutOff";
    /// Messages the deadline came before a worker started them: handed back as fresh
    /// messages, no receive spent.
    pub const HANDED_BACK: &str = "MessagesHandedBack";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Bytes => "Bytes",
        }
    }
}

/// One invocation's figures: counts and bytes summed, latencies kept one by one (EMF takes
/// up to 100 values per metric, so CloudWatch computes true percentiles).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    values: BTreeMap<&'static str, (Unit, Vec<f64>)>,
}

impl Recorded {
    pub fn add(&mut self, name: &'static str, unit: Unit, value: f64) {
        let (_, values) = self.values.entry(name).or_insert((unit, Vec::new()));
        match unit {
            Unit::Milliseconds if values.len() < 100 => values.push(value),
            Unit::Milliseconds => {}
            Unit::Count | Unit::Bytes => match values.first_mut() {
                Some(sum) => *sum += value,
                None => values.push(value),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF document, one member per metric, under two dimension sets: per function
    /// (`Stack`, `Function`) and the whole stack (`Stack`), which the alarms watch.
    pub fn to_emf(&self, function: &str, stack: &str, timestamp_ms: u64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, (unit, _))| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut document = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Stack", "Function"], ["Stack"]],
                    "Metrics": definitions,
                }],
            },
            "Stack": stack,
            "Function": function,
        });
        for (name, (_, values)) in &self.values {
            document[*name] = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
        }
        document
    }
}

static FUNCTION: OnceLock<&'static str> = OnceLock::new();
static RECORDED: Mutex<Recorded> = Mutex::new(Recorded {
    values: BTreeMap::new(),
});

/// Names the function the metrics come from (its crate name); `telemetry::init` calls it.
pub fn init(function: &'static str) {
    let _ = FUNCTION.set(function);
}

fn record(name: &'static str, unit: Unit, value: f64) {
    RECORDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .add(name, unit, value);
}

pub fn count(name: &'static str, n: u64) {
    record(name, Unit::Count, n as f64);
}

pub fn millis(name: &'static str, micros: u64) {
    record(name, Unit::Milliseconds, micros as f64 / 1000.0);
}

pub fn bytes(name: &'static str, n: u64) {
    record(name, Unit::Bytes, n as f64);
}

/// Prints what this invocation recorded as one EMF line, and starts afresh. Only in a
/// function ([`init`] was called): library tests record but print nothing.
pub fn flush() {
    let recorded = std::mem::take(
        &mut *RECORDED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let Some(function) = FUNCTION.get() else {
        return;
    };
    if recorded.is_empty() {
        return;
    }
    let stack = std::env::var(STACK_ENV).unwrap_or_else(|_| "local".into());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!("{}", recorded.to_emf(function, &stack, now_ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_becomes_one_emf_document() {
        let mut recorded = Recorded::default();
        recorded.add(name::EVENTS_APPLIED, Unit::Count, 2.0);
        recorded.add(name::EVENTS_APPLIED, Unit::Count, 1.0);
        recorded.add(name::ACK_LATENCY, Unit::Milliseconds, 1.5);
        recorded.add(name::ACK_LATENCY, Unit::Milliseconds, 2.5);
        recorded.add(name::RECORDING_BYTES, Unit::Bytes, 4096.0);
        let emf = recorded.to_emf("status-worker", "prod", 1_700_000_000_000);
        assert_eq!(emf["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Voicehooks");
        assert_eq!(
            directive["Dimensions"],
            json!([["Stack", "Function"], ["Stack"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "AckLatency", "Unit": "Milliseconds"},
                {"Name": "EventsApplied", "Unit": "Count"},
                {"Name": "RecordingBytes", "Unit": "Bytes"},
            ])
        );
        // Every metric and dimension named in the directive is a member of the root.
        assert_eq!(emf["EventsApplied"], 3.0);
        assert_eq!(emf["AckLatency"], json!([1.5, 2.5]));
        assert_eq!(emf["RecordingBytes"], 4096.0);
        assert_eq!(
            (emf["Stack"].as_str(), emf["Function"].as_str()),
            (Some("prod"), Some("status-worker"))
        );
    }

    #[test]
    fn latencies_keep_at_most_the_100_values_emf_allows() {
        let mut recorded = Recorded::default();
        for i in 0..150 {
            recorded.add(name::ACK_LATENCY, Unit::Milliseconds, f64::from(i));
        }
        let emf = recorded.to_emf("f", "s", 0);
        assert_eq!(emf["AckLatency"].as_array().map(Vec::len), Some(100));
    }
}
