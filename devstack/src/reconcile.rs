//! Calls whose callbacks Twilio gave up on, for `make demo`, `make chaos` and the tests: the
//! stand-in's REST API knows how they ended, our table does not, and reconciliation must
//! repair every one.

use voicectl::media_server::Recording;
use voicectl::simulate::{SimulateOptions, Twilio};
use voicectl::twilio_api::CallResource;
use voicehooks::config::local;
use voicehooks::recording::{DynamoRecordingStore, RecordingStore};
use voicehooks::twilio::overrides;
use voicehooks::twilio::{CallStatus, Params};

use crate::LocalStack;

/// What was lost, and what reconciliation must bring back.
#[derive(Debug, Clone, Default)]
pub struct GaveUp {
    /// (CallSid, the final status Twilio has).
    pub calls: Vec<(String, CallStatus)>,
    /// (CallSid, RecordingSid): completed at Twilio, never called back.
    pub recordings: Vec<(String, String)>,
}

fn sid(prefix: &str, n: u64, seed: u64) -> String {
    format!("{prefix}{:032x}", (u128::from(seed) << 64) | u128::from(n))
}

/// Places `calls` calls at the stand-in whose final status callbacks never arrive (Twilio
/// gave up: its retries spent, or a 5xx it was not told to retry). Every third got no
/// callback at all; the others got `initiated` and `ringing`. Every other one leaves a
/// recording whose callback was lost too.
pub async fn place(stack: &LocalStack, calls: u64, seed: u64) -> anyhow::Result<GaveUp> {
    let twilio = Twilio::new(&SimulateOptions {
        routes: stack.routes(),
        ..SimulateOptions::default()
    })?;
    let status_url = format!("{}#{}", stack.status_webhook_public(), overrides::CALLBACK);
    let finals = [
        CallStatus::Completed,
        CallStatus::NoAnswer,
        CallStatus::Busy,
    ];
    let mut lost = GaveUp::default();
    for n in 0..calls {
        let call_sid = sid("CA", n, seed);
        let status = finals[(n % 3) as usize];
        let (from, to) = ("+16285550142", "+14155550100");
        if n % 3 != 2 {
            for (seq, early) in [CallStatus::Initiated, CallStatus::Ringing]
                .into_iter()
                .enumerate()
            {
                let params: Params = [
                    ("AccountSid", local::ACCOUNT_SID.to_owned()),
                    ("CallSid", call_sid.clone()),
                    ("CallStatus", early.as_str().to_owned()),
                    ("From", from.to_owned()),
                    ("To", to.to_owned()),
                    ("Direction", "inbound".to_owned()),
                    ("ApiVersion", "2010-04-01".to_owned()),
                    ("SequenceNumber", seq.to_string()),
                ]
                .into_iter()
                .collect();
                // Under chaos an early callback may be lost too: reconciliation's final
                // status covers it either way.
                let token = format!("gave-up-{call_sid}-{seq}");
                let _ = twilio.deliver(&status_url, &params, Some(&token)).await;
            }
        }
        stack.media.provisioned().add_call(
            local::ACCOUNT_SID,
            &CallResource {
                sid: call_sid.clone(),
                parent_call_sid: None,
                status: status.as_str().to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
                direction: "inbound".to_owned(),
                duration: if status == CallStatus::Completed {
                    37
                } else {
                    0
                },
            },
        );
        lost.calls.push((call_sid.clone(), status));
        if n % 2 == 0 {
            let recording_sid = sid("RE", n, seed);
            stack.media.add(&recording_sid, Recording::new(4, 1));
            stack.media.provisioned().add_recording(
                local::ACCOUNT_SID,
                &call_sid,
                &recording_sid,
                (4, 1),
                &stack.media.recording_url(&recording_sid),
            );
            lost.recordings.push((call_sid, recording_sid));
        }
    }
    Ok(lost)
}

/// What is still not repaired: one line per call or recording.
pub async fn unrepaired(stack: &LocalStack, lost: &GaveUp) -> anyhow::Result<Vec<String>> {
    let calls = voicehooks::calls::DynamoCallStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let recordings = DynamoRecordingStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let mut problems = Vec::new();
    for (call_sid, status) in &lost.calls {
        let record = calls.get_call(call_sid).await?;
        let stored = record.as_ref().and_then(|r| r.status.clone());
        if stored.as_deref() != Some(status.as_str()) {
            problems.push(format!(
                "{call_sid}: Twilio says {status}, the table {stored:?} after reconcile"
            ));
        }
        let reconciled = record
            .iter()
            .flat_map(|r| &r.timeline)
            .any(|e| e.reconciled && e.applied);
        if !reconciled {
            problems.push(format!(
                "{call_sid}: no applied `reconciled` timeline entry"
            ));
        }
    }
    for (call_sid, recording_sid) in &lost.recordings {
        let archived = recordings
            .get(call_sid, recording_sid)
            .await?
            .is_some_and(|r| r.is_archived());
        if !archived {
            problems.push(format!(
                "{recording_sid} of {call_sid}: not archived after reconcile"
            ));
        }
    }
    Ok(problems)
}

/// Reconciliation as `voicectl reconcile` runs it, against the local stack.
pub async fn run(
    stack: &LocalStack,
    since: std::time::Duration,
) -> anyhow::Result<voicehooks::reconcile::ReconcileReport> {
    let twilio = stack.twilio_rest();
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let status_queue =
        voicehooks::queue::SqsEventQueue::new(sqs.clone(), &stack.resources.status_queue_url);
    let recording_queue =
        voicehooks::queue::SqsEventQueue::new(sqs, &stack.resources.recording.url);
    let report = voicehooks::reconcile::Reconciler {
        twilio: &twilio,
        calls: &voicehooks::calls::DynamoCallStore::new(
            dynamodb.clone(),
            &stack.resources.calls_table,
        ),
        recordings: &DynamoRecordingStore::new(dynamodb, &stack.resources.calls_table),
        status_queue: &status_queue,
        recording_queue: &recording_queue,
    }
    .run(time::OffsetDateTime::now_utc() - since)
    .await?;
    Ok(report)
}
