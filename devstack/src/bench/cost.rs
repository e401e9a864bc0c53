//! What a million calls cost: every AWS request the functions made during the in-order run,
//! at us-east-1 list prices; Lambda's GB-seconds from the invocations' measured durations at
//! the template's memory sizes; and the same traffic through the peer, the usual AWS design
//! for Twilio callbacks, beside ours.
//!
//! The peer (API Gateway → SQS → Lambda → SNS fan-out → S3 and DynamoDB per event): API
//! Gateway's SQS integration queues every callback; a consumer Lambda reads them in batches and
//! publishes each to an SNS topic; two subscriber Lambdas (SNS invokes Lambda once per
//! message) write the event to S3 and to DynamoDB. Voice webhooks, which must answer TwiML,
//! are one Lambda each in both designs, and the recordings are archived and transcribed by the
//! same requests as ours, so the two differ only in the event path.

use std::collections::HashMap;
use std::time::Duration;

use voicehooks::metrics::name;

use super::{WEBHOOKS, WORKERS, is_s3_put_class, is_write, per, verdict};
use crate::emf::Emf;
use crate::local_stack;

/// A public list price, us-east-1, per million requests (checked November 2026).
struct Price {
    what: &'static str,
    per_million: f64,
}
const API_GATEWAY: Price = Price {
    what: "API Gateway HTTP API requests",
    per_million: 1.00,
};
const LAMBDA: Price = Price {
    what: "Lambda requests",
    per_million: 0.20,
};
const SQS: Price = Price {
    what: "SQS requests (standard queue, 64 KB each)",
    per_million: 0.40,
};
const SNS: Price = Price {
    what: "SNS publishes (deliveries to Lambda are free)",
    per_million: 0.50,
};
const DYNAMO_WRITE: Price = Price {
    what: "DynamoDB on-demand writes (WRU, 1 per ≤1 KB)",
    per_million: 0.625,
};
const DYNAMO_READ: Price = Price {
    what: "DynamoDB on-demand reads (RRU)",
    per_million: 0.125,
};
const S3_PUT: Price = Price {
    what: "S3 PUT/COPY/POST/LIST requests",
    per_million: 5.00,
};
const S3_GET: Price = Price {
    what: "S3 GET/HEAD requests (DELETE is free)",
    per_million: 0.40,
};
const SECRETS: Price = Price {
    what: "Secrets Manager API calls",
    per_million: 5.00,
};
/// Lambda on arm64 (the template's architecture), per GB-second, us-east-1, first tier.
const GB_SECOND: f64 = 0.000_013_333_4;
/// The goal for requests alone, per million calls.
const GOAL: f64 = 30.0;

/// One function's share of the run, per call: what the capacity model is built on.
#[derive(Debug, Clone)]
pub struct FunctionLoad {
    pub name: &'static str,
    /// Invocations per call.
    pub invocations: f64,
    /// Messages (events, recordings, transcripts) per invocation; 1 for a webhook.
    pub per_invocation: f64,
    /// Mean billed duration of an invocation (Lambda rounds up to the millisecond).
    pub mean: Duration,
    pub memory_mb: i32,
}

/// The run's traffic, per call.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub webhooks: f64,
    pub recordings: f64,
    pub sqs_sends: f64,
    pub dynamo_writes: f64,
    /// The status worker's writes per status event (late and duplicate ones included).
    pub writes_per_status_event: f64,
    pub functions: Vec<FunctionLoad>,
}

impl Traffic {
    pub fn function(&self, name: &str) -> Option<&FunctionLoad> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The per-event figures the capacity model stands on, which a load run checks.
    pub fn per_event_inputs(&self) -> Vec<(&'static str, f64)> {
        let ms = |name| {
            self.function(name)
                .map_or(f64::NAN, |f| f.mean.as_secs_f64() * 1_000.0)
        };
        let fill = |name| self.function(name).map_or(f64::NAN, |f| f.per_invocation);
        vec![
            (
                "status webhook, ms per invocation",
                ms(local_stack::WEBHOOK_STATUS),
            ),
            (
                "voice webhook, ms per invocation",
                ms(local_stack::WEBHOOK_VOICE),
            ),
            (
                "status worker, events per batch",
                fill(local_stack::STATUS_WORKER),
            ),
            (
                "status worker, ms per batch",
                ms(local_stack::STATUS_WORKER),
            ),
            (
                "status worker, DynamoDB writes per event",
                self.writes_per_status_event,
            ),
            (
                "recording worker, ms per invocation",
                ms(local_stack::RECORDING_WORKER),
            ),
        ]
    }

    /// Lambda instances busy at `calls_per_second`, all functions together (Little's law:
    /// arrivals × time in system).
    pub fn concurrency(&self, calls_per_second: f64) -> f64 {
        self.functions
            .iter()
            .map(|f| calls_per_second * f.invocations * f.mean.as_secs_f64())
            .sum()
    }
}

/// Reads the run's traffic from its EMF lines and the invocations' durations.
pub fn traffic(
    emf: &Emf,
    calls: usize,
    durations: &HashMap<String, Vec<Duration>>,
    memory_mb: impl Fn(&str) -> i32,
) -> Traffic {
    let calls = calls as f64;
    let messages = |function: &str| -> f64 {
        match function {
            local_stack::STATUS_WORKER => [
                name::EVENTS_APPLIED,
                name::EVENTS_DUPLICATE,
                name::EVENTS_LATE,
                name::CONFERENCE_EVENTS,
            ]
            .iter()
            .map(|m| emf.sum(function, m))
            .sum(),
            local_stack::RECORDING_WORKER => emf.sum(function, name::RECORDINGS_ARCHIVED),
            local_stack::TRANSCRIPT_WORKER => emf.sum(function, name::TRANSCRIPTIONS_COMPLETED),
            _ => emf.invocations(function),
        }
    };
    let functions = WEBHOOKS
        .iter()
        .chain(WORKERS.iter())
        .map(|&function| {
            let billed: Vec<f64> = durations
                .get(function)
                .map(|d| d.iter().map(billed_ms).collect())
                .unwrap_or_default();
            let mean_ms = billed.iter().sum::<f64>() / billed.len().max(1) as f64;
            FunctionLoad {
                name: function,
                invocations: emf.invocations(function) / calls,
                per_invocation: per(messages(function), emf.invocations(function)),
                mean: Duration::from_secs_f64(mean_ms / 1_000.0),
                memory_mb: memory_mb(function),
            }
        })
        .collect();
    let all = all_functions();
    Traffic {
        webhooks: invocations(emf, &WEBHOOKS, calls),
        recordings: messages(local_stack::RECORDING_WORKER) / calls,
        sqs_sends: requests(emf, &all, "SQS", &|o| o.starts_with("SendMessage"), calls),
        dynamo_writes: requests(emf, &all, "DynamoDB", &is_write, calls),
        writes_per_status_event: per(
            emf.calls(local_stack::STATUS_WORKER, "DynamoDB", is_write),
            messages(local_stack::STATUS_WORKER),
        ),
        functions,
    }
}

fn all_functions() -> Vec<&'static str> {
    WEBHOOKS.iter().chain(WORKERS.iter()).copied().collect()
}

/// Invocations of `functions`, per call.
fn invocations(emf: &Emf, functions: &[&str], calls: f64) -> f64 {
    functions.iter().map(|f| emf.invocations(f)).sum::<f64>() / calls
}

/// Requests of `functions` to `service` whose operation passes `op`, per call.
fn requests(
    emf: &Emf,
    functions: &[&str],
    service: &str,
    op: &dyn Fn(&str) -> bool,
    calls: f64,
) -> f64 {
    functions
        .iter()
        .map(|f| emf.calls(f, service, op))
        .sum::<f64>()
        / calls
}

/// Lambda bills each invocation's duration rounded up to the millisecond.
fn billed_ms(d: &Duration) -> f64 {
    (d.as_secs_f64() * 1_000.0).ceil().max(1.0)
}

/// One price line: requests per call in our design and in the peer's.
struct Line {
    price: Price,
    ours: f64,
    peer: f64,
}

/// Prints the cost per million calls, ours beside the peer's.
pub fn print(emf: &Emf, calls: usize, traffic: &Traffic) {
    let mix = Mix::of(emf, calls, traffic);
    println!(
        "\n   Cost per million calls: this run's mix of {:.2} webhooks and {:.2} recordings a call, \
         us-east-1 list prices; the peer is API Gateway → SQS → Lambda → SNS fan-out → S3 and \
         DynamoDB per event, for the same traffic",
        traffic.webhooks, traffic.recordings
    );
    let (ours, peer) = print_lines(&mix.lines(traffic));
    println!(
        "   cost per million calls: ${ours:.2} (requests)   goal ≤ ${GOAL:.0}: {}   the peer: ${peer:.2} ({:.1}x ours)",
        verdict(ours <= GOAL),
        peer / ours
    );
    // Per instance, not per call: each instance reads the secret once and keeps it (the
    // token cache), and on AWS an instance serves calls for hours. This run's few hundred
    // calls over every local instance would price a handful of cold starts as if each call
    // had one.
    let secret_reads = mix.count(&mix.all, "SecretsManager", &|_| true) * mix.calls;
    println!(
        "   Not per call: {} Secrets Manager reads, one per cold start of an instance (${:.6} each), \
         the same in both designs; counted as if per call, this run's would add ${:.2}",
        secret_reads,
        SECRETS.per_million / 1e6,
        secret_reads / mix.calls * SECRETS.per_million
    );
    print_gb_seconds(traffic, mix.voice, mix.callbacks, mix.consumer_batches);
    println!(
        "   Not in these: Amazon Transcribe ($0.024 per audio minute, by far the largest cost of \
         a recorded call), KMS, storage, logs, and the spill drainer and reconciler (they run on \
         a schedule, not per call)."
    );
}

/// The run's requests per call, and the shape of the same traffic through the peer.
struct Mix<'a> {
    emf: &'a Emf,
    calls: f64,
    all: Vec<&'static str>,
    /// Voice webhooks per call.
    voice: f64,
    /// Callbacks (status, recording, transcription) per call.
    callbacks: f64,
    /// The peer's consumer batches per call: it reads as our status worker does.
    consumer_batches: f64,
}

const MEDIA: [&str; 2] = [
    local_stack::RECORDING_WORKER,
    local_stack::TRANSCRIPT_WORKER,
];

impl<'a> Mix<'a> {
    fn of(emf: &'a Emf, calls: usize, traffic: &Traffic) -> Self {
        let calls = calls as f64;
        let voice = invocations(emf, &[local_stack::WEBHOOK_VOICE], calls);
        let callbacks = traffic.webhooks - voice;
        let per_batch = traffic
            .function(local_stack::STATUS_WORKER)
            .map_or(1.0, |f| f.per_invocation.max(1.0));
        Mix {
            emf,
            calls,
            all: all_functions(),
            voice,
            callbacks,
            consumer_batches: callbacks / per_batch,
        }
    }

    fn count(&self, functions: &[&str], service: &str, op: &dyn Fn(&str) -> bool) -> f64 {
        requests(self.emf, functions, service, op, self.calls)
    }

    fn invocations(&self, functions: &[&str]) -> f64 {
        invocations(self.emf, functions, self.calls)
    }

    /// Each priced service's requests per call, ours and the peer's.
    fn lines(&self, traffic: &Traffic) -> [Line; 8] {
        let (all, voice, callbacks) = (&self.all, self.voice, self.callbacks);
        let media_batches = self.invocations(&MEDIA);
        // Lambda's event source mapping receives each batch and deletes it: two SQS requests
        // a batch, made on our behalf and billed to the queue's owner.
        let worker_batches = self.invocations(&WORKERS);
        let s3_get = |o: &str| !is_s3_put_class(o) && !o.starts_with("Delete");
        [
            Line {
                price: API_GATEWAY,
                ours: traffic.webhooks,
                peer: traffic.webhooks,
            },
            Line {
                price: LAMBDA,
                ours: self.invocations(all),
                peer: voice + self.consumer_batches + 2.0 * callbacks + media_batches,
            },
            Line {
                price: SQS,
                ours: self.count(all, "SQS", &|_| true) + 2.0 * worker_batches,
                peer: callbacks
                    + 2.0 * self.consumer_batches
                    + self.count(&MEDIA, "SQS", &|_| true)
                    + 2.0 * media_batches,
            },
            Line {
                price: SNS,
                ours: 0.0,
                peer: callbacks,
            },
            Line {
                price: DYNAMO_WRITE,
                ours: self.count(all, "DynamoDB", &is_write),
                peer: callbacks + self.count(&MEDIA, "DynamoDB", &is_write),
            },
            Line {
                price: DYNAMO_READ,
                ours: self.count(all, "DynamoDB", &|o| !is_write(o)),
                peer: self.count(&MEDIA, "DynamoDB", &|o| !is_write(o)),
            },
            Line {
                price: S3_PUT,
                ours: self.count(all, "S3", &is_s3_put_class),
                peer: callbacks + self.count(&MEDIA, "S3", &is_s3_put_class),
            },
            Line {
                price: S3_GET,
                ours: self.count(all, "S3", &s3_get),
                peer: self.count(&MEDIA, "S3", &s3_get),
            },
        ]
    }
}

/// Prints each price line; the totals per million calls, ours and the peer's.
fn print_lines(lines: &[Line]) -> (f64, f64) {
    println!(
        "   {:<48} {:>8} {:>10} {:>12} {:>10} {:>12}",
        "", "$ per M", "ours/call", "ours $/M", "peer/call", "peer $/M"
    );
    let (mut ours, mut peer) = (0.0, 0.0);
    for line in lines {
        let (o, p) = (
            line.ours * line.price.per_million,
            line.peer * line.price.per_million,
        );
        ours += o;
        peer += p;
        println!(
            "   {:<48} {:>8.3} {:>10.3} {o:>12.2} {:>10.3} {p:>12.2}",
            line.price.what, line.price.per_million, line.ours, line.peer
        );
    }
    (ours, peer)
}

/// Lambda GB-seconds per call, ours from every invocation's measured duration at its
/// function's memory size; the peer's from the same durations (its consumer as our status
/// worker, each SNS subscriber as one of our callback webhooks: one AWS call each).
fn print_gb_seconds(traffic: &Traffic, voice: f64, callbacks: f64, consumer_batches: f64) {
    let gb_s = |f: &FunctionLoad, invocations: f64| {
        invocations * f.mean.as_secs_f64() * f64::from(f.memory_mb) / 1024.0
    };
    let ours: f64 = traffic
        .functions
        .iter()
        .map(|f| gb_s(f, f.invocations))
        .sum();
    let find = |name| traffic.function(name);
    let peer: f64 = [
        find(local_stack::WEBHOOK_VOICE).map(|f| gb_s(f, voice)),
        find(local_stack::STATUS_WORKER).map(|f| gb_s(f, consumer_batches)),
        find(local_stack::WEBHOOK_STATUS).map(|f| gb_s(f, 2.0 * callbacks)),
        find(local_stack::RECORDING_WORKER).map(|f| gb_s(f, f.invocations)),
        find(local_stack::TRANSCRIPT_WORKER).map(|f| gb_s(f, f.invocations)),
    ]
    .into_iter()
    .flatten()
    .sum();
    println!(
        "   Lambda duration: {ours:.4} GB-s per call at the template's memory sizes, from the \
         invocations' measured durations (here, against moto) = ${:.2} per million calls \
         (arm64, ${GB_SECOND}/GB-s); the peer, from the same durations: {peer:.4} GB-s = ${:.2}",
        ours * GB_SECOND * 1e6,
        peer * GB_SECOND * 1e6
    );
    for f in &traffic.functions {
        println!(
            "     {:<22} {:>6.3} invocations/call × {:>7.2} ms × {:>5} MB",
            f.name,
            f.invocations,
            f.mean.as_secs_f64() * 1_000.0,
            f.memory_mb
        );
    }
}
