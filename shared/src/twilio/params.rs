//! Webhook parameters: decoded strictly, kept in arrival order (replay must be exact), and
//! the typed view of a call-status callback.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The POST parameters of one webhook, in the order Twilio sent them (names may repeat).
///
/// Every name and value lives in one string, the pairs are spans of it: decoding a webhook
/// costs two allocations instead of two per parameter (`make bench` times it). Immutable once read and shared, not copied: the envelope, the log line and
/// the worker's view of one webhook hold the same pairs (a clone is a reference count).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(Arc<Decoded>);

#[derive(Default, PartialEq, Eq)]
struct Decoded {
    text: String,
    /// (name start, name end, value end): each value starts where its name ends.
    spans: Vec<(usize, usize, usize)>,
}

impl Decoded {
    fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.spans.push((start, name_end, self.text.len()));
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A list of `[name, value]` pairs, as the envelope has always carried them.
impl Serialize for Params {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<(String, String)>::deserialize(deserializer).map(Self::new)
    }
}

/// Why a body could not be read as parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid form encoding: bad percent-escape near byte {0}")]
    BadEscape(usize),
    #[error("a form value is not valid UTF-8 once percent-decoded")]
    ValueNotUtf8,
    #[error("JSON body is not an object of scalar values: {0}")]
    BadJson(String),
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        pairs.into_iter().collect()
    }

    /// Decodes `application/x-www-form-urlencoded` strictly.
    ///
    /// Hand-written because `form_urlencoded` (and so `serde_urlencoded`) decodes lossily: a
    /// bad escape or invalid UTF-8 would silently become other bytes than Twilio signed, and
    /// the caller would get a misleading 403 instead of a 400 that says what is wrong.
    pub fn from_form(body: &[u8]) -> Result<Self, DecodeError> {
        std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
        let pairs = body.iter().filter(|&&b| b == b'&').count() + 1;
        let mut decoded = Vec::with_capacity(body.len());
        let mut spans = Vec::with_capacity(pairs);
        // One pass over the bytes: `&` ends a pair, its first `=` ends the name.
        let (mut pair_at, mut start, mut name_end) = (0, 0, None);
        let mut i = 0;
        while i <= body.len() {
            match body.get(i) {
                None | Some(b'&') => {
                    if i > pair_at {
                        let name_end = name_end.unwrap_or(decoded.len());
                        spans.push((start, name_end, decoded.len()));
                    }
                    (pair_at, start, name_end) = (i + 1, decoded.len(), None);
                }
                Some(b'=') if name_end.is_none() => name_end = Some(decoded.len()),
                Some(b'=') => decoded.push(b'='),
                Some(b'+') => decoded.push(b' '),
                Some(b'%') => {
                    let hex = |j: usize| body.get(j).and_then(|b| (*b as char).to_digit(16));
                    let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
                        return Err(DecodeError::BadEscape(i));
                    };
                    decoded.push((high * 16 + low) as u8);
                    i += 2;
                }
                Some(_) => {
                    // A run of plain bytes, copied whole.
                    let run = body[i..]
                        .iter()
                        .position(|b| matches!(b, b'&' | b'=' | b'+' | b'%'))
                        .unwrap_or(body.len() - i);
                    decoded.extend_from_slice(&body[i..i + run]);
                    i += run;
                    continue;
                }
            }
            i += 1;
        }
        let text = String::from_utf8(decoded).map_err(|_| DecodeError::ValueNotUtf8)?;
        // Valid as a whole and cut only between characters: each name and value is UTF-8 on
        // its own too.
        let cut = |at: usize| text.is_char_boundary(at);
        if !spans.iter().all(|&(s, n, e)| cut(s) && cut(n) && cut(e)) {
            return Err(DecodeError::ValueNotUtf8);
        }
        Ok(Self(Arc::new(Decoded { text, spans })))
    }

    /// Reads a JSON object whose values are strings, numbers or booleans as parameters.
    pub fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| DecodeError::BadJson(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(DecodeError::BadJson("top level is not an object".into()));
        };
        map.into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(s) => Ok((name, s)),
                serde_json::Value::Number(n) => Ok((name, n.to_string())),
                serde_json::Value::Bool(b) => Ok((name, b.to_string())),
                other => Err(DecodeError::BadJson(format!(
                    "{name} is {other}, not a scalar"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        // Names compared as bytes: no character-boundary checks on the pairs skipped.
        let text = self.0.text.as_str();
        self.0
            .spans
            .iter()
            .find(|&&(start, name_end, _)| {
                text.as_bytes().get(start..name_end) == Some(name.as_bytes())
            })
            .map(|&(_, name_end, end)| &text[name_end..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = self.0.text.as_str();
        self.0
            .spans
            .iter()
            .map(move |&(start, name_end, end)| (&text[start..name_end], &text[name_end..end]))
    }

    pub fn len(&self) -> usize {
        self.0.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.spans.is_empty()
    }

    /// Form-encodes the parameters, in order (what a replay or the Twilio stand-in sends).
    pub fn to_form(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.iter() {
            out.append_pair(name, value);
        }
        out.finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut decoded = Decoded::default();
        for (name, value) in iter {
            decoded.push(name.as_ref(), value.as_ref());
        }
        Self(Arc::new(decoded))
    }
}

/// A Twilio `CallStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        Self::Queued,
        Self::Initiated,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::Failed,
        Self::NoAnswer,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
        }
    }

    /// Where the status stands in a call's life: a call only ever moves to a higher rank.
    /// All terminal statuses share the top rank, and nothing follows them.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Initiated => 1,
            Self::Ringing => 2,
            Self::InProgress => 3,
            Self::Completed | Self::Busy | Self::Failed | Self::NoAnswer | Self::Canceled => {
                Self::TERMINAL_RANK
            }
        }
    }

    pub const TERMINAL_RANK: u8 = 4;

    pub fn is_terminal(self) -> bool {
        self.rank() == Self::TERMINAL_RANK
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown CallStatus {0:?}")]
pub struct UnknownCallStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownCallStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownCallStatus(s.to_owned()))
    }
}

/// A parameter that is required and missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{name} is not a valid {what}: {value:?}")]
    Invalid {
        name: &'static str,
        what: &'static str,
        value: String,
    },
    #[error(transparent)]
    UnknownStatus(#[from] UnknownCallStatus),
}

/// The typed view of a call-status callback. Twilio's reference:
/// <https://www.twilio.com/docs/voice/api/call-resource#statuscallback>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback<'a> {
    pub call_sid: &'a str,
    pub account_sid: &'a str,
    pub status: CallStatus,
    /// Order in which Twilio fired this call's callbacks, from 0. Absent on some callbacks.
    pub sequence_number: Option<u32>,
    /// Twilio's RFC 2822 time of the event.
    pub timestamp: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub duration_secs: Option<u32>,
    pub parent_call_sid: Option<&'a str>,
}

impl<'a> StatusCallback<'a> {
    pub fn parse(params: &'a Params) -> Result<Self, ParamError> {
        let status = required(params, "CallStatus")?.parse()?;
        Ok(Self {
            call_sid: sid(params, "CallSid", "CA")?,
            account_sid: sid(params, "AccountSid", "AC")?,
            status,
            sequence_number: number(params, "SequenceNumber")?,
            timestamp: optional(params, "Timestamp"),
            from: optional(params, "From"),
            to: optional(params, "To"),
            direction: optional(params, "Direction"),
            duration_secs: number(params, "CallDuration")?,
            parent_call_sid: optional(params, "ParentCallSid"),
        })
    }
}

/// `RecordingStatus` of a recording-status callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordingStatus {
    InProgress,
    Completed,
    Absent,
    Failed,
}

impl RecordingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Absent => "absent",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for RecordingStatus {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::InProgress,
            Self::Completed,
            Self::Absent,
            Self::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| ParamError::Invalid {
            name: "RecordingStatus",
            what: "recording status",
            value: s.chars().take(32).collect(),
        })
    }
}

/// The typed view of a recording-status callback.
/// <https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingCallback<'a> {
    pub account_sid: &'a str,
    pub call_sid: &'a str,
    pub recording_sid: &'a str,
    pub status: RecordingStatus,
    /// Where the media is, without extension; required once completed.
    pub url: Option<&'a str>,
    pub duration_secs: Option<u32>,
    pub channels: Option<u32>,
    pub source: Option<&'a str>,
    /// `RecordingStartTime`, RFC 2822.
    pub started_at: Option<&'a str>,
    /// `ErrorCode`: `0`, or why Twilio has no file (16101, 16102 for `absent`).
    pub error_code: Option<&'a str>,
}

impl<'a> RecordingCallback<'a> {
    pub fn parse(params: &'a Params) -> Result<Self, ParamError> {
        let status: RecordingStatus = required(params, "RecordingStatus")?.parse()?;
        let url = optional(params, "RecordingUrl");
        if status == RecordingStatus::Completed && url.is_none() {
            return Err(ParamError::Missing("RecordingUrl"));
        }
        Ok(Self {
            account_sid: sid(params, "AccountSid", "AC")?,
            call_sid: sid(params, "CallSid", "CA")?,
            recording_sid: sid(params, "RecordingSid", "RE")?,
            status,
            url,
            duration_secs: number(params, "RecordingDuration")?,
            channels: number(params, "RecordingChannels")?,
            source: optional(params, "RecordingSource"),
            started_at: optional(params, "RecordingStartTime"),
            error_code: optional(params, "ErrorCode"),
        })
    }
}

/// The typed view of a `<Record transcribe>` callback (Twilio's own transcription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionCallback<'a> {
    pub account_sid: &'a str,
    pub call_sid: &'a str,
    pub recording_sid: &'a str,
    pub transcription_sid: &'a str,
    /// `completed` or `failed`.
    pub status: &'a str,
    pub text: Option<&'a str>,
}

impl<'a> TranscriptionCallback<'a> {
    pub fn parse(params: &'a Params) -> Result<Self, ParamError> {
        Ok(Self {
            account_sid: sid(params, "AccountSid", "AC")?,
            call_sid: sid(params, "CallSid", "CA")?,
            recording_sid: sid(params, "RecordingSid", "RE")?,
            transcription_sid: sid(params, "TranscriptionSid", "TR")?,
            status: required(params, "TranscriptionStatus")?,
            text: optional(params, "TranscriptionText"),
        })
    }
}

/// A conference's `StatusCallbackEvent`: what happened to the room or to one participant.
/// Twilio's list (TwiML `<Conference>`, "statusCallbackEvent"): the room's start and end,
/// and a participant's join, leave, mute/unmute, hold/unhold, modify (coaching changed),
/// speech start/stop and announcement end/fail. A name Twilio adds later is kept as
/// [`RoomEvent::Other`] rather than refused: a 400 would make Twilio drop the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEvent<'a> {
    ConferenceStart,
    ConferenceEnd,
    ParticipantJoin,
    ParticipantLeave,
    ParticipantMute,
    ParticipantUnmute,
    ParticipantHold,
    ParticipantUnhold,
    ParticipantModify,
    Other(&'a str),
}

impl<'a> RoomEvent<'a> {
    const KNOWN: [(&'static str, RoomEvent<'static>); 9] = [
        ("conference-start", RoomEvent::ConferenceStart),
        ("conference-end", RoomEvent::ConferenceEnd),
        ("participant-join", RoomEvent::ParticipantJoin),
        ("participant-leave", RoomEvent::ParticipantLeave),
        ("participant-mute", RoomEvent::ParticipantMute),
        ("participant-unmute", RoomEvent::ParticipantUnmute),
        ("participant-hold", RoomEvent::ParticipantHold),
        ("participant-unhold", RoomEvent::ParticipantUnhold),
        ("participant-modify", RoomEvent::ParticipantModify),
    ];

    /// Reads a `StatusCallbackEvent`: a known name, or another `[a-z-]` word of up to 40.
    pub fn parse(value: &'a str) -> Result<Self, ParamError> {
        if let Some((_, event)) = Self::KNOWN.iter().find(|(name, _)| *name == value) {
            return Ok(*event);
        }
        let word = !value.is_empty()
            && value.len() <= 40
            && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        if word {
            Ok(Self::Other(value))
        } else {
            Err(ParamError::Invalid {
                name: "StatusCallbackEvent",
                what: "conference event",
                value: value.chars().take(40).collect(),
            })
        }
    }

    pub fn as_str(self) -> &'a str {
        match self {
            Self::Other(name) => name,
            known => known.label(),
        }
    }

    /// The name for logs and metrics: Twilio's, or `other` for one this build does not know.
    pub fn label(self) -> &'static str {
        Self::KNOWN
            .iter()
            .find(|(_, event)| *event == self)
            .map_or("other", |(name, _)| name)
    }

    /// Whether the event is about one participant (and so carries its `CallSid`).
    pub fn is_participant(self) -> bool {
        match self {
            Self::ConferenceStart | Self::ConferenceEnd => false,
            Self::Other(name) => name.starts_with("participant-"),
            _ => true,
        }
    }
}

/// The typed view of a conference's status callback
/// (<https://www.twilio.com/docs/voice/twiml/conference#attributes-statuscallback-parameters>):
/// the room's own events carry no `CallSid`; a participant's do, with its `Muted`, `Hold`
/// and `Coaching`, and on `participant-leave` why it left (`ReasonParticipantLeft`,
/// `ParticipantCallStatus`, added 2023-10-25 per Twilio's changelog). `SequenceNumber`
/// orders the events of one conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceCallback<'a> {
    pub conference_sid: &'a str,
    pub account_sid: &'a str,
    /// The room's name, as the TwiML gave it.
    pub friendly_name: Option<&'a str>,
    pub event: RoomEvent<'a>,
    pub sequence_number: Option<u32>,
    /// Twilio's RFC 2822 time of the event.
    pub timestamp: Option<&'a str>,
    /// The participant's call, on participant events.
    pub call_sid: Option<&'a str>,
    pub muted: Option<bool>,
    pub hold: Option<bool>,
    pub coaching: Option<bool>,
    /// `participant-leave`: `participant_hung_up`, `participant_updated_via_api`, ...
    pub reason_participant_left: Option<&'a str>,
    pub participant_call_status: Option<&'a str>,
    /// `conference-end`: `last-participant-left`, `conference-ended-via-api`, ...
    pub reason_conference_ended: Option<&'a str>,
    pub call_sid_ending_conference: Option<&'a str>,
}

impl<'a> ConferenceCallback<'a> {
    pub fn parse(params: &'a Params) -> Result<Self, ParamError> {
        let event = RoomEvent::parse(required(params, "StatusCallbackEvent")?)?;
        let call_sid = match optional(params, "CallSid") {
            Some(_) => Some(sid(params, "CallSid", "CA")?),
            None if event.is_participant() => return Err(ParamError::Missing("CallSid")),
            None => None,
        };
        let ending = match optional(params, "CallSidEndingConference") {
            Some(_) => Some(sid(params, "CallSidEndingConference", "CA")?),
            None => None,
        };
        Ok(Self {
            conference_sid: sid(params, "ConferenceSid", "CF")?,
            account_sid: sid(params, "AccountSid", "AC")?,
            friendly_name: optional(params, "FriendlyName"),
            event,
            sequence_number: number(params, "SequenceNumber")?,
            timestamp: optional(params, "Timestamp"),
            call_sid,
            muted: flag(params, "Muted")?,
            hold: flag(params, "Hold")?,
            coaching: flag(params, "Coaching")?,
            reason_participant_left: optional(params, "ReasonParticipantLeft"),
            participant_call_status: optional(params, "ParticipantCallStatus"),
            reason_conference_ended: optional(params, "ReasonConferenceEnded"),
            call_sid_ending_conference: ending,
        })
    }
}

fn optional<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).filter(|v| !v.is_empty())
}

fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, ParamError> {
    optional(params, name).ok_or(ParamError::Missing(name))
}

/// A Twilio SID: its two-letter prefix then letters and digits (Twilio's are 34 long; test
/// fixtures are often shorter, so only the shape is checked). Bounded so a key stays small.
pub(crate) fn sid<'a>(
    params: &'a Params,
    name: &'static str,
    prefix: &str,
) -> Result<&'a str, ParamError> {
    let value = required(params, name)?;
    let well_formed = value.len() <= 64
        && value.starts_with(prefix)
        && value.bytes().all(|b| b.is_ascii_alphanumeric());
    if well_formed {
        Ok(value)
    } else {
        Err(ParamError::Invalid {
            name,
            what: "SID",
            value: value.chars().take(64).collect(),
        })
    }
}

fn number(params: &Params, name: &'static str) -> Result<Option<u32>, ParamError> {
    optional(params, name)
        .map(|v| {
            v.parse().map_err(|_| ParamError::Invalid {
                name,
                what: "number",
                value: v.chars().take(32).collect(),
            })
        })
        .transpose()
}

/// Twilio's `true`/`false`.
fn flag(params: &Params, name: &'static str) -> Result<Option<bool>, ParamError> {
    optional(params, name)
        .map(|v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ParamError::Invalid {
                name,
                what: "true or false",
                value: other.chars().take(32).collect(),
            }),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_is_strict_and_ordered() {
        let p = Params::from_form(b"B=2&A=x+y%2B&A=%E2%9C%93&empty=&flag").unwrap();
        let pairs: Vec<_> = p.iter().collect();
        assert_eq!(
            pairs,
            [
                ("B", "2"),
                ("A", "x y+"),
                ("A", "✓"),
                ("empty", ""),
                ("flag", "")
            ]
        );
        assert_eq!(Params::from_form(b"a=%zz"), Err(DecodeError::BadEscape(2)));
        assert_eq!(Params::from_form(b"a=%4"), Err(DecodeError::BadEscape(2)));
        assert_eq!(Params::from_form(b"a=\xff"), Err(DecodeError::NotUtf8));
        assert_eq!(Params::from_form(b"a=%FF"), Err(DecodeError::ValueNotUtf8));
    }

    #[test]
    fn form_round_trips() {
        let p: Params = [("To", "+1 415"), ("Body", "a&b=c ✓")]
            .into_iter()
            .collect();
        assert_eq!(Params::from_form(p.to_form().as_bytes()).unwrap(), p);
    }

    #[test]
    fn json_bodies_take_scalars_only() {
        let p = Params::from_json(br#"{"CallSid":"CA1","n":3,"b":true}"#).unwrap();
        assert_eq!(p.get("n"), Some("3"));
        assert!(Params::from_json(br#"{"a":{"b":1}}"#).is_err());
        assert!(Params::from_json(b"[1]").is_err());
    }

    #[test]
    fn call_status_round_trips_and_ranks() {
        for status in CallStatus::ALL {
            assert_eq!(status.as_str().parse::<CallStatus>().unwrap(), status);
        }
        assert!("answered".parse::<CallStatus>().is_err());
        assert!(CallStatus::Ringing.rank() < CallStatus::InProgress.rank());
        assert!(CallStatus::NoAnswer.is_terminal() && !CallStatus::Queued.is_terminal());
    }

    #[test]
    fn status_callback_requires_sids_and_a_known_status() {
        let ok: Params = [
            ("CallSid", "CA1"),
            ("AccountSid", "AC1"),
            ("CallStatus", "ringing"),
            ("SequenceNumber", "1"),
        ]
        .into_iter()
        .collect();
        let cb = StatusCallback::parse(&ok).unwrap();
        assert_eq!(
            (cb.status, cb.sequence_number),
            (CallStatus::Ringing, Some(1))
        );

        let missing: Params = [("AccountSid", "AC1"), ("CallStatus", "ringing")]
            .into_iter()
            .collect();
        assert_eq!(
            StatusCallback::parse(&missing),
            Err(ParamError::Missing("CallSid"))
        );
        let unknown: Params = [
            ("CallSid", "CA1"),
            ("AccountSid", "AC1"),
            ("CallStatus", "exploded"),
        ]
        .into_iter()
        .collect();
        assert!(matches!(
            StatusCallback::parse(&unknown),
            Err(ParamError::UnknownStatus(_))
        ));
        let bad_sid: Params = [
            ("CallSid", "CA1/../x"),
            ("AccountSid", "AC1"),
            ("CallStatus", "busy"),
        ]
        .into_iter()
        .collect();
        assert!(matches!(
            StatusCallback::parse(&bad_sid),
            Err(ParamError::Invalid {
                name: "CallSid",
                ..
            })
        ));
    }

    #[test]
    fn conference_callbacks_need_a_call_on_participant_events_only() {
        let room = |extra: &[(&'static str, &'static str)]| -> Params {
            [
                ("ConferenceSid", "CF1"),
                ("AccountSid", "AC1"),
                ("FriendlyName", "daily-standup"),
                ("SequenceNumber", "3"),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect()
        };
        let start = room(&[("StatusCallbackEvent", "conference-start")]);
        let cb = ConferenceCallback::parse(&start).unwrap();
        assert_eq!(
            (cb.event, cb.call_sid, cb.sequence_number),
            (RoomEvent::ConferenceStart, None, Some(3))
        );
        let join = room(&[
            ("StatusCallbackEvent", "participant-join"),
            ("CallSid", "CA1"),
            ("Muted", "false"),
            ("Hold", "true"),
        ]);
        let cb = ConferenceCallback::parse(&join).unwrap();
        assert_eq!(
            (cb.call_sid, cb.muted, cb.hold),
            (Some("CA1"), Some(false), Some(true))
        );
        let no_call = room(&[("StatusCallbackEvent", "participant-leave")]);
        assert_eq!(
            ConferenceCallback::parse(&no_call),
            Err(ParamError::Missing("CallSid"))
        );
        let newer = room(&[("StatusCallbackEvent", "conference-record-start")]);
        assert_eq!(
            ConferenceCallback::parse(&newer).unwrap().event,
            RoomEvent::Other("conference-record-start")
        );
        for bad in [
            room(&[("StatusCallbackEvent", "Participant Join")]),
            room(&[
                ("StatusCallbackEvent", "participant-mute"),
                ("CallSid", "CA1"),
                ("Muted", "yes"),
            ]),
            [
                ("ConferenceSid", "CA1"),
                ("AccountSid", "AC1"),
                ("StatusCallbackEvent", "conference-end"),
            ]
            .into_iter()
            .collect(),
        ] {
            assert!(ConferenceCallback::parse(&bad).is_err(), "{bad:?}");
        }
        for (name, event) in RoomEvent::KNOWN {
            assert_eq!(RoomEvent::parse(name).unwrap().as_str(), name);
            assert_eq!(RoomEvent::parse(name).unwrap(), event);
        }
    }
}
