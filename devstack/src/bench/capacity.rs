//! Capacity at 10, 100 and 1,000 calls per second, on paper: each limit the traffic meets,
//! what one call per second asks of it (from the in-order run's per-call figures and
//! measured durations), and so the call rate at which it is reached, with the template knob
//! or quota that moves it.
//!
//! Quotas, as AWS documents them (us-east-1 defaults):
//! - API Gateway: 10,000 requests/s per account and Region across all APIs, burst 5,000
//!   ("Amazon API Gateway quotas"); a stage's `DefaultRouteSettings` throttle comes first.
//! - Lambda: 1,000 concurrent executions per account and Region ("Lambda quotas"); each
//!   function scales by 1,000 instances every 10 s ("Lambda scaling behavior"). An SQS event
//!   source mapping's `ScalingConfig.MaximumConcurrency` (2–1,000) caps its function.
//! - DynamoDB on-demand: a new table sustains 4,000 writes/s at once and twice its previous
//!   peak after that; 40,000 write units/s per table by default; 1,000 per partition
//!   ("DynamoDB on-demand capacity mode", "Pre-warming a table for on-demand capacity mode").
//! - SQS standard queues: "nearly unlimited" API calls per second; 120,000 messages in flight
//!   ("Amazon SQS quotas").

use serde_json::Value;

use super::WORKERS;
use super::cost::Traffic;
use crate::deploy::Deployment;

const RATES: [f64; 3] = [10.0, 100.0, 1_000.0];
const API_GATEWAY_ACCOUNT_RPS: f64 = 10_000.0;
const LAMBDA_ACCOUNT_CONCURRENCY: f64 = 1_000.0;
const DYNAMO_NEW_TABLE_WRITES: f64 = 4_000.0;
const DYNAMO_TABLE_WRITES: f64 = 40_000.0;

/// A limit, what one call per second asks of it, and what moves it.
struct Limit {
    what: String,
    /// Demand at one call per second, in the limit's unit.
    per_call: f64,
    limit: f64,
    unit: &'static str,
    knob: String,
}

impl Limit {
    fn reached_at(&self) -> f64 {
        if self.per_call > 0.0 {
            self.limit / self.per_call
        } else {
            f64::INFINITY
        }
    }
}

/// The template's settings the model reads: the stage throttle and the mappings.
fn stage_throttle(template: &Value) -> Option<(f64, f64)> {
    template["Resources"].as_object()?.values().find_map(|r| {
        (r["Type"] == "AWS::ApiGatewayV2::Stage").then(|| {
            let settings = &r["Properties"]["DefaultRouteSettings"];
            Some((
                settings["ThrottlingRateLimit"].as_f64()?,
                settings["ThrottlingBurstLimit"].as_f64()?,
            ))
        })?
    })
}

fn limits(traffic: &Traffic, deployment: &Deployment) -> Vec<Limit> {
    let mut limits = Vec::new();
    if let Some((rate, burst)) = stage_throttle(&deployment.template) {
        limits.push(Limit {
            what: format!("API Gateway stage throttle (burst {burst:.0})"),
            per_call: traffic.webhooks,
            limit: rate,
            unit: "req/s",
            knob: "HttpApiStage DefaultRouteSettings.ThrottlingRateLimit/BurstLimit".into(),
        });
    }
    limits.push(Limit {
        what: "API Gateway account quota".into(),
        per_call: traffic.webhooks,
        limit: API_GATEWAY_ACCOUNT_RPS,
        unit: "req/s",
        knob: "Service Quotas L-8A5B8E43".into(),
    });
    limits.push(Limit {
        what: "Lambda concurrency, account (all seven functions)".into(),
        per_call: traffic.concurrency(1.0),
        limit: LAMBDA_ACCOUNT_CONCURRENCY,
        unit: "instances",
        knob: "Service Quotas L-B99A9384; reserved concurrency".into(),
    });
    for function in WORKERS {
        let (Some(load), Ok(mapping)) = (traffic.function(function), deployment.mapping(function))
        else {
            continue;
        };
        // Messages one instance gets through per second, at the run's batch fill (batches
        // fill up under load, so this is the conservative side).
        let per_instance = load.per_invocation / load.mean.as_secs_f64().max(1e-3);
        let messages_per_call = load.invocations * load.per_invocation;
        limits.push(Limit {
            what: format!(
                "{function} (MaximumConcurrency {} × {:.1} msgs in {:.0} ms)",
                mapping.max_concurrency,
                load.per_invocation,
                load.mean.as_secs_f64() * 1_000.0
            ),
            per_call: messages_per_call,
            limit: mapping.max_concurrency as f64 * per_instance,
            unit: "msgs/s",
            knob: format!(
                "{function} mapping ScalingConfig.MaximumConcurrency (batch {})",
                mapping.batch_size
            ),
        });
    }
    limits.push(Limit {
        what: "DynamoDB on-demand, a new table".into(),
        per_call: traffic.dynamo_writes,
        limit: DYNAMO_NEW_TABLE_WRITES,
        unit: "WRU/s",
        knob: "the table's WarmThroughput (pre-warm), or ProvisionedThroughput".into(),
    });
    limits.push(Limit {
        what: "DynamoDB table quota".into(),
        per_call: traffic.dynamo_writes,
        limit: DYNAMO_TABLE_WRITES,
        unit: "WRU/s",
        knob: "Service Quotas (table-level write throughput)".into(),
    });
    limits.sort_by(|a, b| a.reached_at().total_cmp(&b.reached_at()));
    limits
}

pub fn print(traffic: &Traffic, deployment: &Deployment) {
    let limits = limits(traffic, deployment);
    println!(
        "\n   Capacity on paper: what one call per second asks of each limit (the run's per-call \
         figures; durations measured here, against moto, so on the slow side), first limit first"
    );
    println!(
        "   {:<58} {:>10} {:>10} {:>10}  what moves it",
        "limit", "per call/s", "limit", "reached at"
    );
    for l in &limits {
        println!(
            "   {:<58} {:>10.3} {:>10.0} {:>10}  {}",
            format!("{} ({})", l.what, l.unit),
            l.per_call,
            l.limit,
            format!("{:.1}/s", l.reached_at()),
            l.knob
        );
    }
    println!(
        "   {:>8} {:>12} {:>14} {:>14} {:>12}  first limit reached",
        "calls/s", "API GW req/s", "Lambda inst.", "DynamoDB WRU/s", "SQS sends/s"
    );
    for rate in RATES {
        let first = limits
            .iter()
            .find(|l| l.reached_at() <= rate)
            .map_or("none".to_owned(), |l| {
                format!("{} at {:.0} calls/s", l.what, l.reached_at())
            });
        println!(
            "   {rate:>8.0} {:>12.0} {:>14.0} {:>14.0} {:>12.0}  {first}",
            rate * traffic.webhooks,
            traffic.concurrency(rate),
            rate * traffic.dynamo_writes,
            rate * traffic.sqs_sends,
        );
    }
    println!(
        "   Not limits here: SQS standard queues (nearly unlimited calls/s; in flight stays far \
         under 120,000), and DynamoDB partitions: items are keyed by CallSid, so one call's few \
         writes a second never near a partition's 1,000 WRU/s."
    );
}
