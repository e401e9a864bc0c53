//! EventBridge's "Transcribe Job State Change", as the transcript queue carries it
//! (<https://docs.aws.amazon.com/transcribe/latest/dg/monitoring-events.html>).

use serde::Deserialize;

/// The `detail` of an EventBridge "Transcribe Job State Change" event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobStateChange {
    #[serde(rename = "TranscriptionJobName")]
    pub job_name: String,
    #[serde(rename = "TranscriptionJobStatus")]
    pub status: String,
    #[serde(rename = "FailureReason", default)]
    pub failure_reason: Option<String>,
}

pub const STATE_CHANGE_DETAIL_TYPE: &str = "Transcribe Job State Change";

impl JobStateChange {
    /// Reads the EventBridge event an SQS message carries; `None` if it is not one.
    pub fn from_event(body: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Event {
            source: String,
            #[serde(rename = "detail-type")]
            detail_type: String,
            detail: JobStateChange,
        }
        let event: Event = serde_json::from_str(body).ok()?;
        (event.source == "aws.transcribe" && event.detail_type == STATE_CHANGE_DETAIL_TYPE)
            .then_some(event.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_event_is_read_and_anything_else_is_not() {
        let event = r#"{"version":"0","id":"1","detail-type":"Transcribe Job State Change","source":"aws.transcribe","account":"123456789012","time":"2026-11-23T00:00:00Z","region":"us-east-1","resources":[],"detail":{"TranscriptionJobName":"RE1","TranscriptionJobStatus":"FAILED","FailureReason":"Unsupported media format."}}"#;
        let change = JobStateChange::from_event(event).unwrap();
        assert_eq!(change.job_name, "RE1");
        assert_eq!(change.status, "FAILED");
        assert_eq!(
            change.failure_reason.as_deref(),
            Some("Unsupported media format.")
        );
        assert!(JobStateChange::from_event(&event.replace("aws.transcribe", "aws.s3")).is_none());
        assert!(JobStateChange::from_event(r#"{"v":1,"kind":"call.status"}"#).is_none());
    }
}
