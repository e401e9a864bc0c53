//! The names `infra/template.yaml` gives a stack's resources (`!Sub "${AWS::StackName}-…"`):
//! how the local stack creates them and how `voicectl` finds them in any stack, deployed or
//! local, from the stack name alone. `tests/infra_agreement.rs` checks both agree.

use crate::events::EventKind;

/// Resource names derived from a stack name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackNames {
    pub stack: String,
}

/// Which of the stack's work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkQueue {
    /// Call status and call started: the status worker.
    Status,
    /// Recording status: the recording worker.
    Recording,
    /// Transcribe job state changes and Twilio transcriptions: the transcript worker.
    Transcript,
}

impl WorkQueue {
    pub const ALL: [Self; 3] = [Self::Status, Self::Recording, Self::Transcript];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Recording => "recording",
            Self::Transcript => "transcript",
        }
    }

    /// The queue the webhooks put an envelope of this kind on.
    pub fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::CallStatus | EventKind::CallStarted | EventKind::ConferenceStatus => {
                Self::Status
            }
            EventKind::RecordingStatus => Self::Recording,
            EventKind::TranscriptionTwilio => Self::Transcript,
        }
    }
}

impl std::fmt::Display for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StackNames {
    pub fn new(stack: &str) -> Self {
        Self {
            stack: stack.to_owned(),
        }
    }
    pub fn queue(&self, pipeline: WorkQueue) -> String {
        format!("{}-{pipeline}", self.stack)
    }
    pub fn dead_letter_queue(&self, pipeline: WorkQueue) -> String {
        format!("{}-{pipeline}-dlq", self.stack)
    }
    pub fn status_queue(&self) -> String {
        self.queue(WorkQueue::Status)
    }
    pub fn status_dlq(&self) -> String {
        self.dead_letter_queue(WorkQueue::Status)
    }
    pub fn recording_queue(&self) -> String {
        self.queue(WorkQueue::Recording)
    }
    pub fn recording_dlq(&self) -> String {
        self.dead_letter_queue(WorkQueue::Recording)
    }
    pub fn transcript_queue(&self) -> String {
        self.queue(WorkQueue::Transcript)
    }
    pub fn transcript_dlq(&self) -> String {
        self.dead_letter_queue(WorkQueue::Transcript)
    }
    pub fn calls_table(&self) -> String {
        format!("{}-calls", self.stack)
    }
    pub fn twilio_secret(&self) -> String {
        format!("{}/twilio", self.stack)
    }
    /// Bucket names are global: the account id makes the stack's own.
    pub fn recordings_bucket(&self, account_id: &str) -> String {
        format!("{}-recordings-{account_id}", self.stack)
    }
    /// The status webhook's Lambda function (the template names every function so).
    pub fn function(&self, function: &str) -> String {
        format!("{}-{function}", self.stack)
    }
    /// Where webhooks spill events SQS did not take (`crate::spill`).
    pub fn spill_bucket(&self, account_id: &str) -> String {
        format!("{}-spill-{account_id}", self.stack)
    }
}
