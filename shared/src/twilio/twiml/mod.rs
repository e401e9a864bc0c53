//! TwiML for voice: typed verbs and nouns, written with quick-xml.
//!
//! Fields carry Twilio's attribute names in camelCase (serde derives them from the field
//! names, so a struct can also be read from configuration or a test vector); `None` leaves
//! an attribute out, and Twilio's default applies. quick-xml escapes text and attribute
//! values, including the newline and tab in attributes that a parser would otherwise
//! normalise to spaces.
//! <https://www.twilio.com/docs/voice/twiml>
//!
//! The model is here, and each struct's fields are its element's attributes, listed once:
//! `attributes` reads them through serde, `write` turns the model into the document, `check`
//! holds a document to the schema Twilio applies (each element's attributes and children).

mod attributes;
mod check;
mod write;

pub use check::check;

use serde::{Deserialize, Deserializer, Serialize};

/// `<Response>`: the verbs Twilio executes in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoiceResponse {
    pub verbs: Vec<Verb>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    Say(Say),
    Play(Play),
    Pause(Pause),
    Gather(Gather),
    Dial(Dial),
    Record(Record),
    Redirect(Redirect),
    Hangup,
    Reject(Reject),
    Enqueue(Enqueue),
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// `<Say>`: text to speech.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Say {
    #[serde(skip)]
    pub text: String,
    pub voice: Option<String>,
    pub language: Option<String>,
    #[serde(rename = "loop")]
    pub loop_: Option<u32>,
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// `<Play>`: an audio URL, or DTMF `digits` with no URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Play {
    #[serde(skip)]
    pub url: String,
    #[serde(rename = "loop")]
    pub loop_: Option<u32>,
    pub digits: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    pub length: Option<u32>,
}

/// What `<Gather>` may say or play while it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Say(Say),
    Play(Play),
    Pause(Pause),
}

/// `<Gather>`: collect DTMF digits and/or speech, then POST them to `action`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gather {
    /// `dtmf`, `speech` or `dtmf speech`.
    pub input: Option<String>,
    pub action: Option<String>,
    pub method: Option<Method>,
    pub timeout: Option<u32>,
    pub num_digits: Option<u32>,
    pub finish_on_key: Option<String>,
    /// Seconds, or `auto`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub speech_timeout: Option<String>,
    pub hints: Option<String>,
    pub language: Option<String>,
    pub barge_in: Option<bool>,
    pub profanity_filter: Option<bool>,
    pub action_on_empty_result: Option<bool>,
    pub enhanced: Option<bool>,
    pub speech_model: Option<String>,
    #[serde(skip)]
    pub prompts: Vec<Prompt>,
}

/// `<Dial>`: connect the caller to another party. Either `number` (text) or `nouns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dial {
    #[serde(skip)]
    pub number: String,
    pub action: Option<String>,
    pub method: Option<Method>,
    pub caller_id: Option<String>,
    pub timeout: Option<u32>,
    pub time_limit: Option<u32>,
    /// `record-from-answer-dual` and friends, or the legacy `true` / `false`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub record: Option<String>,
    pub trim: Option<String>,
    pub recording_status_callback: Option<String>,
    /// Space-separated: `in-progress completed absent`.
    pub recording_status_callback_event: Option<String>,
    pub recording_status_callback_method: Option<Method>,
    pub recording_track: Option<String>,
    pub ring_tone: Option<String>,
    pub sequential: Option<bool>,
    pub answer_on_bridge: Option<bool>,
    pub hangup_on_star: Option<bool>,
    #[serde(skip)]
    pub nouns: Vec<DialNoun>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialNoun {
    Number(Number),
    Client(Client),
    Sip(Sip),
    Conference(Conference),
    Queue(Queue),
}

/// The status callback of one dialled leg; the same three attributes on every noun.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegCallbacks {
    pub status_callback: Option<String>,
    /// Space-separated: `initiated ringing answered completed`.
    pub status_callback_event: Option<String>,
    pub status_callback_method: Option<Method>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Number {
    #[serde(skip)]
    pub number: String,
    pub send_digits: Option<String>,
    pub url: Option<String>,
    #[serde(flatten)]
    pub callbacks: LegCallbacks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Client {
    #[serde(skip)]
    pub identity: String,
    pub url: Option<String>,
    #[serde(flatten)]
    pub callbacks: LegCallbacks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sip {
    #[serde(skip)]
    pub uri: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub url: Option<String>,
    #[serde(flatten)]
    pub callbacks: LegCallbacks,
}

/// `<Conference>`: a named room. Its `statusCallback` reports conference events
/// (`start end join leave ...`), not call progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conference {
    #[serde(skip)]
    pub name: String,
    pub muted: Option<bool>,
    /// `true`, `false`, `onEnter` or `onExit`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub beep: Option<String>,
    pub start_conference_on_enter: Option<bool>,
    pub end_conference_on_exit: Option<bool>,
    pub wait_url: Option<String>,
    pub wait_method: Option<Method>,
    pub max_participants: Option<u32>,
    /// `record-from-start` or `do-not-record`.
    pub record: Option<String>,
    pub trim: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_event: Option<String>,
    pub status_callback_method: Option<Method>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_event: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Queue {
    #[serde(skip)]
    pub name: String,
    pub url: Option<String>,
    pub method: Option<Method>,
}

/// `<Record>`: record the caller, then POST to `action`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub action: Option<String>,
    pub method: Option<Method>,
    pub timeout: Option<u32>,
    pub finish_on_key: Option<String>,
    pub max_length: Option<u32>,
    pub play_beep: Option<bool>,
    pub trim: Option<String>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_event: Option<String>,
    pub recording_status_callback_method: Option<Method>,
    pub transcribe: Option<bool>,
    pub transcribe_callback: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    #[serde(skip)]
    pub url: String,
    pub method: Option<Method>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectReason {
    Rejected,
    Busy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reject {
    pub reason: Option<RejectReason>,
}

/// `<Enqueue>`: put the caller in a named queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enqueue {
    #[serde(skip)]
    pub name: String,
    pub action: Option<String>,
    pub method: Option<Method>,
    pub wait_url: Option<String>,
    pub wait_url_method: Option<Method>,
    pub max_queue_size: Option<u32>,
}

/// Attributes whose TwiML value is a keyword or a literal (`speechTimeout="auto"` or `5`,
/// `record="true"` or `record-from-answer`), read from JSON or TOML as a string, a
/// boolean or a number.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Flag(bool),
        Count(u64),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::Text(t) => t,
        Scalar::Flag(b) => b.to_string(),
        Scalar::Count(n) => n.to_string(),
    }))
}

impl VoiceResponse {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(mut self, verb: impl Into<Verb>) -> Self {
        self.verbs.push(verb.into());
        self
    }
}

macro_rules! into_verb {
    ($($t:ident),*) => {$(
        impl From<$t> for Verb {
            fn from(v: $t) -> Self { Self::$t(v) }
        }
    )*};
}
into_verb!(
    Say, Play, Pause, Gather, Dial, Record, Redirect, Reject, Enqueue
);
