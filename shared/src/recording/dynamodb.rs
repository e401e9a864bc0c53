//! [`RecordingStore`] on DynamoDB: recordings beside their call, `pk = CALL#<CallSid>`,
//! `sk = RECORDING#<RecordingSid>`, so one query returns a call with its recordings. Each
//! write is one `UpdateItem`; the rules of [`crate::recording`] are its conditions.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::media::{Archived, UploadProgress};
use super::{
    ARCHIVED, InlineTranscript, RecordingRecord, RecordingRef, RecordingStore, TranscriptOutcome,
    Trouble, epoch_ms,
};
use crate::calls::StoreError;
use crate::dynamodb::{
    Item, ItemExt, PARTITION_KEY, SORT_KEY, call_item_key, get_consistent, n, s, store_error,
};
use crate::events::now_rfc3339;
use crate::twilio::RecordingStatus;

const SK_PREFIX: &str = "RECORDING#";

fn key(call_sid: &str, recording_sid: &str) -> Item {
    call_item_key(call_sid, &format!("{SK_PREFIX}{recording_sid}"))
}

/// A conditional update's answer: `Ok(false)` when its condition did not hold.
fn held<T>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(store_error(e)),
    }
}

/// Recording items on DynamoDB (the calls table).
#[derive(Clone)]
pub struct DynamoRecordingStore {
    client: Client,
    table: String,
}

/// One `SET a = :a, …` update, built from named values.
struct Update {
    sets: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Update {
    fn new() -> Self {
        Self {
            sets: Vec::new(),
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// `attribute = value`.
    fn set(mut self, attribute: &str, value: AttributeValue) -> Self {
        let i = self.sets.len();
        self.sets.push(format!("#a{i} = :v{i}"));
        self.names.insert(format!("#a{i}"), attribute.to_owned());
        self.values.insert(format!(":v{i}"), value);
        self
    }

    /// `attribute = if_not_exists(attribute, value)`: the first write wins.
    fn set_once(mut self, attribute: &str, value: AttributeValue) -> Self {
        let i = self.sets.len();
        self.sets
            .push(format!("#a{i} = if_not_exists(#a{i}, :v{i})"));
        self.names.insert(format!("#a{i}"), attribute.to_owned());
        self.values.insert(format!(":v{i}"), value);
        self
    }

    fn set_some(self, attribute: &str, value: Option<AttributeValue>) -> Self {
        match value {
            Some(value) => self.set(attribute, value),
            None => self,
        }
    }

    /// The identity every write carries, so an item is whole whichever write came first.
    fn identity(self, recording: &RecordingRef<'_>) -> Self {
        self.set("call_sid", s(recording.call_sid))
            .set("recording_sid", s(recording.recording_sid))
            .set("account_sid", s(recording.account_sid))
            .set("updated_at", s(now_rfc3339()))
            .set_some("duration_secs", recording.duration_secs.map(n))
            .set_some("channels", recording.channels.map(n))
            .set_some("source", recording.source.map(s))
    }
}

impl DynamoRecordingStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Runs `update` on the item; `Ok(false)` when `condition` did not hold.
    async fn write(
        &self,
        call_sid: &str,
        recording_sid: &str,
        update: Update,
        condition: Option<&str>,
        condition_values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let mut values = update.values;
        values.extend(
            condition_values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        let mut names = update.names;
        if condition.is_some() {
            names.insert("#state".into(), "state".into());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(call_sid, recording_sid)))
            .update_expression(format!("SET {}", update.sets.join(", ")))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        held(result)
    }

    /// An unconditional update of the recording's item.
    async fn update(&self, recording: &RecordingRef<'_>, update: Update) -> Result<(), StoreError> {
        self.write(
            recording.call_sid,
            recording.recording_sid,
            update,
            None,
            &[],
        )
        .await
        .map(drop)
    }
}

impl RecordingStore for DynamoRecordingStore {
    async fn record_status(
        &self,
        recording: &RecordingRef<'_>,
        status: RecordingStatus,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        let update = Update::new()
            .identity(recording)
            .set("state", s(status.as_str()))
            .set_some("error_code", error_code.filter(|code| *code != "0").map(s));
        // `status_may_move`, as a condition.
        let in_progress = [(":in_progress", s(RecordingStatus::InProgress.as_str()))];
        let (condition, values): (_, &[_]) = match status {
            RecordingStatus::InProgress => ("attribute_not_exists(#state)", &[]),
            _ => (
                "attribute_not_exists(#state) OR #state = :in_progress",
                &in_progress,
            ),
        };
        self.write(
            recording.call_sid,
            recording.recording_sid,
            update,
            Some(condition),
            values,
        )
        .await
    }

    async fn take_lease(
        &self,
        recording: &RecordingRef<'_>,
        until_ms: u64,
    ) -> Result<bool, StoreError> {
        let now_ms = epoch_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(recording.call_sid, recording.recording_sid)))
            .update_expression("SET #lease = :until, #sid = :sid, #call = :call")
            // `lease_is_free`, as a condition.
            .condition_expression("attribute_not_exists(#lease) OR #lease < :now")
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#sid", "recording_sid")
            .expression_attribute_names("#call", "call_sid")
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":sid", s(recording.recording_sid))
            .expression_attribute_values(":call", s(recording.call_sid))
            .send()
            .await;
        held(result)
    }

    async fn save_progress(
        &self,
        recording: &RecordingRef<'_>,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StoreError> {
        let json = progress
            .map(|p| serde_json::to_string(p).expect("progress always serialises"))
            .unwrap_or_default();
        let update = Update::new()
            .identity(recording)
            .set("upload", s(json))
            .set("lease_until_ms", n(0));
        self.update(recording, update).await
    }

    async fn record_trouble(
        &self,
        recording: &RecordingRef<'_>,
        trouble: &Trouble,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(trouble).expect("trouble always serialises");
        let update = Update::new().identity(recording).set("trouble", s(json));
        self.update(recording, update).await
    }

    async fn record_archived(
        &self,
        recording: &RecordingRef<'_>,
        archived: &Archived,
    ) -> Result<(), StoreError> {
        let update = Update::new()
            .identity(recording)
            .set("upload", s(""))
            .set("trouble", s(""))
            .set("lease_until_ms", n(0))
            .set("state", s(ARCHIVED))
            .set("s3_bucket", s(&archived.bucket))
            .set("s3_key", s(&archived.key))
            .set("bytes", n(archived.bytes))
            .set("sha256", s(&archived.sha256))
            .set("parts", n(archived.parts))
            .set_once("archived_at", s(now_rfc3339()));
        self.update(recording, update).await
    }

    async fn record_deleted_from_twilio(
        &self,
        recording: &RecordingRef<'_>,
    ) -> Result<(), StoreError> {
        let update = Update::new()
            .identity(recording)
            .set("deleted_from_twilio", AttributeValue::Bool(true));
        self.update(recording, update).await
    }

    async fn record_transcription_started(
        &self,
        recording: &RecordingRef<'_>,
        job: &str,
    ) -> Result<(), StoreError> {
        let update = Update::new()
            .identity(recording)
            .set("transcription_job", s(job))
            .set_once("transcription_status", s("IN_PROGRESS"));
        self.update(recording, update).await
    }

    async fn record_transcript(
        &self,
        (call_sid, recording_sid): (&str, &str),
        job: &str,
        outcome: &TranscriptOutcome,
        document_key: &str,
    ) -> Result<(), StoreError> {
        let update = Update::new()
            .set("call_sid", s(call_sid))
            .set("recording_sid", s(recording_sid))
            .set("transcription_job", s(job))
            .set("transcribed_at", s(now_rfc3339()));
        let update = match outcome {
            TranscriptOutcome::Completed { text, channels } => {
                let kept = InlineTranscript::of(text, channels);
                let channels = kept
                    .channels
                    .into_iter()
                    .map(|(label, text)| (label, s(text)))
                    .collect();
                update
                    .set("transcription_status", s("COMPLETED"))
                    .set("transcript_text", s(kept.text))
                    .set("transcript_channels", AttributeValue::M(channels))
                    .set("transcript_s3_key", s(document_key))
                    .set("transcript_truncated", AttributeValue::Bool(kept.truncated))
            }
            TranscriptOutcome::Failed { reason } => update
                .set("transcription_status", s("FAILED"))
                .set("transcription_failure", s(reason)),
        };
        self.write(call_sid, recording_sid, update, None, &[])
            .await
            .map(drop)
    }

    async fn record_twilio_transcription(
        &self,
        recording: &RecordingRef<'_>,
        transcription_sid: &str,
        status: &str,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        let update = Update::new()
            .identity(recording)
            .set("twilio_transcription_sid", s(transcription_sid))
            .set("twilio_transcription_status", s(status))
            .set_some("twilio_transcription_text", text.map(s));
        self.update(recording, update).await
    }

    async fn get(
        &self,
        call_sid: &str,
        recording_sid: &str,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let item = get_consistent(&self.client, &self.table, key(call_sid, recording_sid)).await?;
        Ok(item.as_ref().map(record))
    }

    async fn for_call(&self, call_sid: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":pk", s(format!("CALL#{call_sid}")))
                .expression_attribute_values(":prefix", s(SK_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(store_error)?;
            records.extend(output.items().iter().map(record));
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(records);
            }
        }
    }
}

fn record(item: &Item) -> RecordingRecord {
    let text = |name: &str| item.text(name).map(str::to_owned);
    let number = |name: &str| item.number(name);
    let mut channels: Vec<(String, String)> = item
        .get("transcript_channels")
        .and_then(|v| v.as_m().ok())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                .collect()
        })
        .unwrap_or_default();
    channels.sort();
    RecordingRecord {
        call_sid: text("call_sid").unwrap_or_default(),
        recording_sid: text("recording_sid").unwrap_or_default(),
        state: text("state"),
        duration_secs: number("duration_secs"),
        channels: number("channels"),
        s3_bucket: text("s3_bucket"),
        s3_key: text("s3_key"),
        bytes: number("bytes"),
        sha256: text("sha256"),
        deleted_from_twilio: item.is_true("deleted_from_twilio"),
        transcription_job: text("transcription_job"),
        transcription_status: text("transcription_status"),
        transcript_text: text("transcript_text"),
        transcript_channels: channels,
        transcript_s3_key: text("transcript_s3_key"),
        transcript_truncated: item.is_true("transcript_truncated"),
        transcription_failure: text("transcription_failure"),
        upload: text("upload")
            .filter(|json| !json.is_empty())
            .and_then(|json| serde_json::from_str(&json).ok()),
        lease_until_ms: number("lease_until_ms"),
        twilio_transcription_status: text("twilio_transcription_status"),
        twilio_transcription_text: text("twilio_transcription_text"),
        error_code: text("error_code"),
        trouble: text("trouble")
            .filter(|json| !json.is_empty())
            .and_then(|json| serde_json::from_str(&json).ok()),
    }
}
