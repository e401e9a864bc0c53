//! TwiML for voice: typed verbs and nouns, written with quick-xml.
//!
//! Fields carry Twilio's attribute names in camelCase (serde derives them from the field
//! names, so a struct can also be read from configuration or a test vector); `None` leaves
//! an attribute out, and Twilio's default applies. quick-xml escapes text and attribute
//! values, including the newline and tab in attributes that a parser would otherwise
//! normalise to spaces.
//! <https://www.twilio.com/docs/voice/twiml>

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
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

// ---- writing ----

/// How an attribute value reads in TwiML.
trait AttrValue {
    fn write_to(&self, out: &mut String);
}

impl AttrValue for String {
    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl AttrValue for u32 {
    fn write_to(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{self}");
    }
}

impl AttrValue for bool {
    fn write_to(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl AttrValue for Method {
    fn write_to(&self, out: &mut String) {
        out.push_str(self.as_str());
    }
}

impl AttrValue for RejectReason {
    fn write_to(&self, out: &mut String) {
        out.push_str(match self {
            Self::Rejected => "rejected",
            Self::Busy => "busy",
        });
    }
}

/// A start tag under construction: set attributes only.
struct Tag {
    name: &'static str,
    start: BytesStart<'static>,
    /// Reused for each non-string value, so numbers and flags cost no allocation each.
    scratch: String,
}

impl Tag {
    fn new(name: &'static str) -> Self {
        // Room for the attributes up front: growing the tag as each one is pushed was about
        // a tenth of a render's instructions (callgrind on the ingress bench).
        let mut content = String::with_capacity(256);
        content.push_str(name);
        Self {
            name,
            start: BytesStart::from_content(content, name.len()),
            scratch: String::new(),
        }
    }

    fn attr(mut self, name: &str, value: &Option<impl AttrValue>) -> Self {
        if let Some(value) = value {
            self.scratch.clear();
            value.write_to(&mut self.scratch);
            self.start
                .push_attribute((name, xml_chars(&self.scratch).as_ref()));
        }
        self
    }

    fn callbacks(self, c: &LegCallbacks) -> Self {
        self.attr("statusCallback", &c.status_callback)
            .attr("statusCallbackEvent", &c.status_callback_event)
            .attr("statusCallbackMethod", &c.status_callback_method)
    }
}

type Xml = Writer<Vec<u8>>;

/// Drops what XML 1.0 cannot carry at all, escaped or not (control characters other than
/// tab, newline and carriage return; U+FFFE and U+FFFF), so text from a caller's params can
/// never make a document Twilio refuses. <https://www.w3.org/TR/xml/#charsets>
fn xml_chars(text: &str) -> Cow<'_, str> {
    // A byte scan first (it vectorises): only a control byte, or 0xEF (the lead byte of
    // U+FFFE and U+FFFF), can start a character to drop. Text almost never has either.
    let suspect = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF;
    let allowed = |c: char| !matches!(c, '\0'..='\x08' | '\x0B' | '\x0C' | '\x0E'..='\x1F' | '\u{FFFE}' | '\u{FFFF}');
    if !text.bytes().any(suspect) || text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|&c| allowed(c)).collect())
    }
}

fn emit(xml: &mut Xml, event: Event<'_>) {
    xml.write_event(event)
        .expect("writing XML into a Vec cannot fail");
}

/// An element with only text; no text makes it self-closing, as twilio-python does.
fn leaf(xml: &mut Xml, tag: Tag, text: &str) {
    if text.is_empty() {
        return emit(xml, Event::Empty(tag.start));
    }
    emit(xml, Event::Start(tag.start));
    emit(xml, Event::Text(BytesText::new(&xml_chars(text))));
    emit(xml, Event::End(BytesEnd::new(tag.name)));
}

/// An element with children (self-closing when there are none).
fn parent(xml: &mut Xml, tag: Tag, children: usize, write_children: impl FnOnce(&mut Xml)) {
    if children == 0 {
        return emit(xml, Event::Empty(tag.start));
    }
    emit(xml, Event::Start(tag.start));
    write_children(xml);
    emit(xml, Event::End(BytesEnd::new(tag.name)));
}

impl VoiceResponse {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(mut self, verb: impl Into<Verb>) -> Self {
        self.verbs.push(verb.into());
        self
    }

    /// The document Twilio reads, with the XML declaration.
    pub fn to_xml(&self) -> String {
        self.write(Writer::new(Vec::with_capacity(1024)))
    }

    /// The same document indented, for people reading it.
    pub fn to_pretty_xml(&self) -> String {
        self.write(Writer::new_with_indent(Vec::with_capacity(1024), b' ', 2))
    }

    fn write(&self, mut xml: Xml) -> String {
        emit(
            &mut xml,
            Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
        );
        parent(&mut xml, Tag::new("Response"), self.verbs.len(), |xml| {
            self.verbs.iter().for_each(|v| v.write(xml))
        });
        String::from_utf8(xml.into_inner()).expect("TwiML is written from UTF-8 strings")
    }
}

impl Verb {
    fn write(&self, xml: &mut Xml) {
        match self {
            Self::Say(v) => v.write(xml),
            Self::Play(v) => v.write(xml),
            Self::Pause(v) => v.write(xml),
            Self::Gather(v) => v.write(xml),
            Self::Dial(v) => v.write(xml),
            Self::Record(v) => v.write(xml),
            Self::Redirect(v) => leaf(xml, Tag::new("Redirect").attr("method", &v.method), &v.url),
            Self::Hangup => emit(xml, Event::Empty(BytesStart::new("Hangup"))),
            Self::Reject(v) => leaf(xml, Tag::new("Reject").attr("reason", &v.reason), ""),
            Self::Enqueue(v) => v.write(xml),
            Self::Leave => emit(xml, Event::Empty(BytesStart::new("Leave"))),
        }
    }
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Say")
            .attr("voice", &self.voice)
            .attr("language", &self.language)
            .attr("loop", &self.loop_);
        leaf(xml, tag, &self.text);
    }
}

impl Play {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Play")
            .attr("loop", &self.loop_)
            .attr("digits", &self.digits);
        leaf(xml, tag, &self.url);
    }
}

impl Pause {
    fn write(&self, xml: &mut Xml) {
        leaf(xml, Tag::new("Pause").attr("length", &self.length), "");
    }
}

impl Gather {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Gather")
            .attr("input", &self.input)
            .attr("action", &self.action)
            .attr("method", &self.method)
            .attr("timeout", &self.timeout)
            .attr("numDigits", &self.num_digits)
            .attr("finishOnKey", &self.finish_on_key)
            .attr("speechTimeout", &self.speech_timeout)
            .attr("hints", &self.hints)
            .attr("language", &self.language)
            .attr("bargeIn", &self.barge_in)
            .attr("profanityFilter", &self.profanity_filter)
            .attr("actionOnEmptyResult", &self.action_on_empty_result)
            .attr("enhanced", &self.enhanced)
            .attr("speechModel", &self.speech_model);
        parent(xml, tag, self.prompts.len(), |xml| {
            for prompt in &self.prompts {
                match prompt {
                    Prompt::Say(v) => v.write(xml),
                    Prompt::Play(v) => v.write(xml),
                    Prompt::Pause(v) => v.write(xml),
                }
            }
        });
    }
}

impl Dial {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Dial")
            .attr("action", &self.action)
            .attr("method", &self.method)
            .attr("callerId", &self.caller_id)
            .attr("timeout", &self.timeout)
            .attr("timeLimit", &self.time_limit)
            .attr("record", &self.record)
            .attr("trim", &self.trim)
            .attr("recordingStatusCallback", &self.recording_status_callback)
            .attr(
                "recordingStatusCallbackEvent",
                &self.recording_status_callback_event,
            )
            .attr(
                "recordingStatusCallbackMethod",
                &self.recording_status_callback_method,
            )
            .attr("recordingTrack", &self.recording_track)
            .attr("ringTone", &self.ring_tone)
            .attr("sequential", &self.sequential)
            .attr("answerOnBridge", &self.answer_on_bridge)
            .attr("hangupOnStar", &self.hangup_on_star);
        if self.nouns.is_empty() {
            return leaf(xml, tag, &self.number);
        }
        parent(xml, tag, self.nouns.len(), |xml| {
            self.nouns.iter().for_each(|n| n.write(xml))
        });
    }
}

impl DialNoun {
    fn write(&self, xml: &mut Xml) {
        match self {
            Self::Number(n) => {
                let tag = Tag::new("Number")
                    .attr("sendDigits", &n.send_digits)
                    .attr("url", &n.url)
                    .callbacks(&n.callbacks);
                leaf(xml, tag, &n.number);
            }
            Self::Client(c) => {
                let tag = Tag::new("Client")
                    .attr("url", &c.url)
                    .callbacks(&c.callbacks);
                leaf(xml, tag, &c.identity);
            }
            Self::Sip(s) => {
                let tag = Tag::new("Sip")
                    .attr("username", &s.username)
                    .attr("password", &s.password)
                    .attr("url", &s.url)
                    .callbacks(&s.callbacks);
                leaf(xml, tag, &s.uri);
            }
            Self::Conference(c) => c.write(xml),
            Self::Queue(q) => {
                let tag = Tag::new("Queue")
                    .attr("url", &q.url)
                    .attr("method", &q.method);
                leaf(xml, tag, &q.name);
            }
        }
    }
}

impl Conference {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Conference")
            .attr("muted", &self.muted)
            .attr("beep", &self.beep)
            .attr("startConferenceOnEnter", &self.start_conference_on_enter)
            .attr("endConferenceOnExit", &self.end_conference_on_exit)
            .attr("waitUrl", &self.wait_url)
            .attr("waitMethod", &self.wait_method)
            .attr("maxParticipants", &self.max_participants)
            .attr("record", &self.record)
            .attr("trim", &self.trim)
            .attr("statusCallback", &self.status_callback)
            .attr("statusCallbackEvent", &self.status_callback_event)
            .attr("statusCallbackMethod", &self.status_callback_method)
            .attr("recordingStatusCallback", &self.recording_status_callback)
            .attr(
                "recordingStatusCallbackEvent",
                &self.recording_status_callback_event,
            );
        leaf(xml, tag, &self.name);
    }
}

impl Record {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Record")
            .attr("action", &self.action)
            .attr("method", &self.method)
            .attr("timeout", &self.timeout)
            .attr("finishOnKey", &self.finish_on_key)
            .attr("maxLength", &self.max_length)
            .attr("playBeep", &self.play_beep)
            .attr("trim", &self.trim)
            .attr("recordingStatusCallback", &self.recording_status_callback)
            .attr(
                "recordingStatusCallbackEvent",
                &self.recording_status_callback_event,
            )
            .attr(
                "recordingStatusCallbackMethod",
                &self.recording_status_callback_method,
            )
            .attr("transcribe", &self.transcribe)
            .attr("transcribeCallback", &self.transcribe_callback);
        leaf(xml, tag, "");
    }
}

impl Enqueue {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Enqueue")
            .attr("action", &self.action)
            .attr("method", &self.method)
            .attr("waitUrl", &self.wait_url)
            .attr("waitUrlMethod", &self.wait_url_method)
            .attr("maxQueueSize", &self.max_queue_size);
        leaf(xml, tag, &self.name);
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

/// A schema-level check of a voice TwiML document, as Twilio applies it before running one
/// (error 12100 otherwise): well-formed, `<Response>` at the root, only the verbs and nouns
/// this module writes, each only where TwiML allows it, with only its own attributes.
/// The Twilio stand-in and the tests run every document through it.
pub fn check(xml: &str) -> Result<(), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not well-formed: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!(
            "root is <{}>, not <Response>",
            root.tag_name().name()
        ));
    }
    check_element(root)
}

/// Which children and attributes each element may have; `text` says whether it may hold text.
struct Rule {
    children: &'static [&'static str],
    attributes: &'static [&'static str],
    text: bool,
}

const CALLBACKS: [&str; 3] = [
    "statusCallback",
    "statusCallbackEvent",
    "statusCallbackMethod",
];

fn rule(name: &str) -> Option<Rule> {
    const VERBS: &[&str] = &[
        "Say", "Play", "Pause", "Gather", "Dial", "Record", "Redirect", "Hangup", "Reject",
        "Enqueue", "Leave",
    ];
    let (children, attributes, text): (&[&str], &[&str], bool) = match name {
        "Response" => (VERBS, &[], false),
        "Say" => (&[], &["voice", "language", "loop"], true),
        "Play" => (&[], &["loop", "digits"], true),
        "Pause" => (&[], &["length"], false),
        "Gather" => (
            &["Say", "Play", "Pause"],
            &[
                "input",
                "action",
                "method",
                "timeout",
                "numDigits",
                "finishOnKey",
                "speechTimeout",
                "hints",
                "language",
                "bargeIn",
                "profanityFilter",
                "actionOnEmptyResult",
                "enhanced",
                "speechModel",
            ],
            false,
        ),
        "Dial" => (
            &["Number", "Client", "Sip", "Conference", "Queue"],
            &[
                "action",
                "method",
                "callerId",
                "timeout",
                "timeLimit",
                "record",
                "trim",
                "recordingStatusCallback",
                "recordingStatusCallbackEvent",
                "recordingStatusCallbackMethod",
                "recordingTrack",
                "ringTone",
                "sequential",
                "answerOnBridge",
                "hangupOnStar",
            ],
            true,
        ),
        "Number" => (
            &[],
            &[
                "sendDigits",
                "url",
                CALLBACKS[0],
                CALLBACKS[1],
                CALLBACKS[2],
            ],
            true,
        ),
        "Client" => (
            &[],
            &["url", CALLBACKS[0], CALLBACKS[1], CALLBACKS[2]],
            true,
        ),
        "Sip" => (
            &[],
            &[
                "username",
                "password",
                "url",
                CALLBACKS[0],
                CALLBACKS[1],
                CALLBACKS[2],
            ],
            true,
        ),
        "Conference" => (
            &[],
            &[
                "muted",
                "beep",
                "startConferenceOnEnter",
                "endConferenceOnExit",
                "waitUrl",
                "waitMethod",
                "maxParticipants",
                "record",
                "trim",
                CALLBACKS[0],
                CALLBACKS[1],
                CALLBACKS[2],
                "recordingStatusCallback",
                "recordingStatusCallbackEvent",
            ],
            true,
        ),
        "Queue" => (&[], &["url", "method"], true),
        "Record" => (
            &[],
            &[
                "action",
                "method",
                "timeout",
                "finishOnKey",
                "maxLength",
                "playBeep",
                "trim",
                "recordingStatusCallback",
                "recordingStatusCallbackEvent",
                "recordingStatusCallbackMethod",
                "transcribe",
                "transcribeCallback",
            ],
            false,
        ),
        "Redirect" => (&[], &["method"], true),
        "Hangup" | "Leave" => (&[], &[], false),
        "Reject" => (&[], &["reason"], false),
        "Enqueue" => (
            &[],
            &[
                "action",
                "method",
                "waitUrl",
                "waitUrlMethod",
                "maxQueueSize",
            ],
            true,
        ),
        _ => return None,
    };
    Some(Rule {
        children,
        attributes,
        text,
    })
}

fn check_element(node: roxmltree::Node<'_, '_>) -> Result<(), String> {
    let name = node.tag_name().name();
    let rule = rule(name).ok_or_else(|| format!("unknown element <{name}>"))?;
    if let Some(a) = node
        .attributes()
        .find(|a| !rule.attributes.contains(&a.name()))
    {
        return Err(format!("<{name}> has no attribute {}", a.name()));
    }
    for child in node.children() {
        if child.is_element() {
            let child_name = child.tag_name().name();
            if !rule.children.contains(&child_name) {
                return Err(format!("<{child_name}> is not allowed inside <{name}>"));
            }
            check_element(child)?;
        } else if child.is_text()
            && !rule.text
            && !child.text().unwrap_or_default().trim().is_empty()
        {
            return Err(format!("<{name}> takes no text"));
        }
    }
    let has_text = node.text().is_some_and(|t| !t.trim().is_empty());
    let has_children = node.children().any(|c| c.is_element());
    let needs_content = match name {
        "Redirect" | "Number" | "Client" | "Sip" | "Conference" | "Queue" | "Enqueue" => has_text,
        "Dial" => has_text != has_children,
        "Play" => has_text || node.has_attribute("digits"),
        _ => true,
    };
    if !needs_content {
        return Err(format!(
            "<{name}> lacks its content (or has both text and nouns)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_declaration_escapes_and_self_closes() {
        let xml = VoiceResponse::new()
            .push(Say {
                voice: Some("a&b\"\n".into()),
                ..Say::new("<x> & y")
            })
            .push(Say::new(""))
            .push(Verb::Hangup)
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="a&amp;b&quot;&#10;">&lt;x&gt; &amp; y</Say><Say/><Hangup/></Response>"#
        );
    }
}
