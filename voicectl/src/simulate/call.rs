//! One call as Twilio plays it: ask the voice URL, follow the TwiML (Gather digits, Dial
//! outcomes, Record), ask the action URLs, and note every leg and every callback the
//! TwiML asked for. The caller's behaviour comes from a seeded script.

use std::collections::VecDeque;

use serde::Serialize;
use voicehooks::twilio::twiml;
use voicehooks::twilio::{CallStatus, Params};

/// What the caller and the people they are connected to will do, decided up front.
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    /// Keys pressed at each `<Gather>` in turn; an empty entry is silence. When it runs out
    /// the caller stays silent.
    pub gathers: VecDeque<String>,
    /// How each `<Dial>` ends in turn (the last one repeats).
    pub dials: VecDeque<CallStatus>,
    /// Seconds spoken into a `<Record>`, talked on an answered leg, or spent in a room.
    pub talk_secs: u32,
    /// Seeds the SIDs of dialled legs and recordings.
    pub sid_seed: u128,
}

/// A request the stand-in makes to the voice webhook.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceRequest {
    pub url: String,
    /// Params added to the call's own for this request (Digits, DialCallStatus, ...).
    pub extra: Vec<(String, String)>,
}

/// One Twilio call: the caller's (the parent) or one leg a `<Dial>` rang.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    pub call_sid: String,
    pub parent_call_sid: Option<String>,
    pub from: String,
    pub to: String,
    /// The statuses it went through, in order; the last is final.
    pub statuses: Vec<CallStatus>,
    /// Where its status callbacks go (the URL Twilio was given) and for which events.
    pub status_callback: Option<String>,
    pub events: Vec<String>,
    pub talk_secs: u32,
}

impl Leg {
    pub fn final_status(&self) -> CallStatus {
        *self.statuses.last().expect("a leg has at least one status")
    }
}

/// A callback the TwiML asked for that is not a call status (recordings, transcriptions).
#[derive(Debug, Clone, Serialize)]
pub struct Requested {
    /// As the TwiML gave it, connection overrides included.
    pub url: String,
    pub params: Params,
}

impl Requested {
    /// Whether it goes to `path` (`/twilio/recording`), whatever its overrides.
    pub fn is_for(&self, path: &str) -> bool {
        let url = self
            .url
            .split_once('#')
            .map_or(self.url.as_str(), |(u, _)| u);
        url.ends_with(path)
    }
}

/// How a call went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Conversation {
    pub voice_requests: Vec<VoiceRequest>,
    /// Every leg the call made, the caller's first.
    pub legs: Vec<Leg>,
    pub requested: Vec<Requested>,
    /// Voice requests that failed, after which Twilio asked the number's fallback URL.
    pub fallbacks: Vec<String>,
    /// What the caller heard as Twilio's application error: the voice URL failed and there
    /// was no fallback, or it failed too; or the document chain looped.
    pub errors: Vec<String>,
    pub voice_latency_us: Vec<u64>,
}

/// The URLs a number is configured with in Twilio's console (the stack's outputs).
#[derive(Debug, Clone)]
pub struct NumberUrls {
    /// "A call comes in".
    pub voice: String,
    /// "Primary handler fails": asked when a voice request fails.
    pub fallback: Option<String>,
    /// "Call status changes".
    pub status_callback: String,
}

/// Why a voice request gave no TwiML, with the error code Twilio reports for it
/// (<https://www.twilio.com/docs/api/errors>): 11200 HTTP retrieval failure, 11205
/// connection failure, 12100 document parse failure.
#[derive(Debug, Clone)]
pub struct VoiceFailure {
    pub error_code: u32,
    pub why: String,
}

impl std::fmt::Display for VoiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (Twilio error {})", self.why, self.error_code)
    }
}

/// The voice webhook as the stand-in sees it: a URL in, TwiML out.
pub trait VoiceServer {
    /// POSTs `params` to `url` and returns the TwiML, or why there was none.
    fn ask(
        &self,
        url: &str,
        params: &Params,
    ) -> impl Future<Output = Result<(String, u64), VoiceFailure>> + Send;
}

/// Asks `url`, checks the TwiML, and on failure asks the fallback as Twilio does, with the
/// request's params plus `ErrorCode` and `ErrorUrl`.
async fn ask_with_fallback<S: VoiceServer>(
    server: &S,
    call: &mut Conversation,
    (url, fallback): (&str, Option<&str>),
    params: &Params,
) -> Result<String, String> {
    let failure = match server.ask(url, params).await {
        Ok((xml, latency_us)) => {
            call.voice_latency_us.push(latency_us);
            match twiml::check(&xml) {
                Ok(()) => return Ok(xml),
                Err(e) => VoiceFailure {
                    error_code: 12100,
                    why: format!("invalid TwiML ({e}): {xml}"),
                },
            }
        }
        Err(failure) => failure,
    };
    let Some(fallback) = fallback else {
        return Err(format!("{url}: {} (no fallback URL)", failure.why));
    };
    call.fallbacks
        .push(format!("{url}: {} ({})", failure.why, failure.error_code));
    let url_without_fragment = url.split_once('#').map_or(url, |(u, _)| u);
    let error_code = failure.error_code.to_string();
    let with_error: Params = params
        .iter()
        .chain([
            ("ErrorCode", error_code.as_str()),
            ("ErrorUrl", url_without_fragment),
        ])
        .collect();
    match server.ask(fallback, &with_error).await {
        Ok((xml, latency_us)) => {
            call.voice_latency_us.push(latency_us);
            twiml::check(&xml)
                .map(|()| xml.clone())
                .map_err(|e| format!("{fallback}: invalid TwiML ({e}): {xml}"))
        }
        Err(second) => Err(format!(
            "{url}: {}; then the fallback {fallback}: {}",
            failure.why, second.why
        )),
    }
}

/// Twilio stops following a document chain at some point; so do we.
const MAX_VOICE_REQUESTS: usize = 12;

const LEG_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// Plays one call: asks the voice URL, follows each TwiML document it gets (pressing keys,
/// ringing dialled legs, leaving a voicemail, joining the room) and the action URLs it names,
/// collecting the callbacks Twilio would send. The caller's own leg comes first.
pub async fn play<S: VoiceServer>(
    server: &S,
    script: &Script,
    number: &NumberUrls,
    account_sid: &str,
) -> Conversation {
    let mut caller = Caller {
        script: script.clone(),
        account_sid,
        children: 0,
        call: Conversation::default(),
    };
    let base = caller.base_params();
    let mut next = Some(VoiceRequest {
        url: number.voice.clone(),
        extra: Vec::new(),
    });
    while let Some(request) = next.take() {
        if caller.call.voice_requests.len() >= MAX_VOICE_REQUESTS {
            caller.call.errors.push(format!(
                "{}: more than {MAX_VOICE_REQUESTS} voice requests",
                script.call_sid
            ));
            break;
        }
        let params = caller.request_params(&base, &request);
        caller.call.voice_requests.push(request.clone());
        let route = (request.url.as_str(), number.fallback.as_deref());
        let xml = match ask_with_fallback(server, &mut caller.call, route, &params).await {
            Ok(xml) => xml,
            // The caller hears "an application error has occurred" and the call ends.
            Err(e) => {
                caller.call.errors.push(format!("{}: {e}", script.call_sid));
                break;
            }
        };
        next = caller.follow(&xml);
    }
    let mut call = caller.call;
    // The caller's own call: answered by the TwiML, completed when the document ends.
    call.legs.insert(
        0,
        Leg {
            call_sid: script.call_sid.clone(),
            parent_call_sid: None,
            from: script.from.clone(),
            to: script.to.clone(),
            statuses: vec![
                CallStatus::Ringing,
                CallStatus::InProgress,
                CallStatus::Completed,
            ],
            status_callback: Some(number.status_callback.clone()),
            events: LEG_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            talk_secs: script.talk_secs,
        },
    );
    call
}

/// What a verb does to the document being followed.
enum Then {
    /// Twilio goes on to the next verb.
    NextVerb,
    /// The document is done: the call goes on to this request, or ends.
    Stop(Option<VoiceRequest>),
}

/// One call as it is played: its script (keys still to press, dial outcomes to come), the
/// SIDs handed out so far, and what was asked and sent.
struct Caller<'a> {
    script: Script,
    account_sid: &'a str,
    /// Child resources (legs, recordings, rooms) so far, each SID derived from the count.
    children: u128,
    call: Conversation,
}

impl Caller<'_> {
    /// What Twilio sends with every voice request of this call.
    fn base_params(&self) -> Params {
        [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.script.call_sid.as_str()),
            ("CallStatus", "in-progress"),
            ("Called", self.script.to.as_str()),
            ("Caller", self.script.from.as_str()),
            ("Direction", "inbound"),
            ("From", self.script.from.as_str()),
            ("To", self.script.to.as_str()),
        ]
        .into_iter()
        .collect()
    }

    /// The params of one voice request: the call's (ringing on the first), then the
    /// request's own (`Digits`, `DialCallStatus`, …).
    fn request_params(&self, base: &Params, request: &VoiceRequest) -> Params {
        let first = self.call.voice_requests.is_empty();
        base.iter()
            .map(|(k, v)| {
                (
                    k,
                    if first && k == "CallStatus" {
                        "ringing"
                    } else {
                        v
                    },
                )
            })
            .chain(request.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect()
    }

    fn next_sid(&mut self, prefix: &str) -> String {
        self.children += 1;
        format!(
            "{prefix}{:032x}",
            self.script.sid_seed.wrapping_add(self.children)
        )
    }

    /// Follows a checked document verb by verb; returns the next voice request, if any.
    fn follow(&mut self, xml: &str) -> Option<VoiceRequest> {
        let doc = roxmltree::Document::parse(xml).expect("checked when it was received");
        for verb in doc.root_element().children().filter(|n| n.is_element()) {
            let then = match verb.tag_name().name() {
                "Gather" => self.gather(verb),
                "Dial" => self.dial(verb),
                "Record" => Then::Stop(self.record(verb)),
                "Redirect" => Then::Stop(verb.text().map(|url| VoiceRequest {
                    url: url.trim().to_owned(),
                    extra: Vec::new(),
                })),
                "Hangup" | "Reject" | "Leave" | "Enqueue" => Then::Stop(None),
                _ => Then::NextVerb, // Say, Play, Pause: heard, nothing to do
            };
            if let Then::Stop(next) = then {
                return next;
            }
        }
        None
    }

    /// Presses the script's next keys, or stays silent.
    fn gather(&mut self, verb: roxmltree::Node<'_, '_>) -> Then {
        let keys = self.script.gathers.pop_front().unwrap_or_default();
        if keys.is_empty() {
            return Then::NextVerb; // silence: Twilio goes on to the next verb
        }
        Then::Stop(verb.attribute("action").map(|url| VoiceRequest {
            url: url.to_owned(),
            extra: vec![("Digits".into(), keys)],
        }))
    }

    /// Rings the dialled legs as the script says they end (one answers, the others are
    /// canceled), with the recording and the room's events when there are any.
    fn dial(&mut self, verb: roxmltree::Node<'_, '_>) -> Then {
        let attr = |name: &str| verb.attribute(name).map(str::to_owned);
        let outcome = match self.script.dials.len() {
            0 => CallStatus::Completed,
            1 => self.script.dials[0],
            _ => self
                .script
                .dials
                .pop_front()
                .unwrap_or(CallStatus::Completed),
        };
        let nouns: Vec<_> = verb.children().filter(|n| n.is_element()).collect();
        let room = nouns.iter().find(|n| n.tag_name().name() == "Conference");
        let mut answered_sid = None;
        for (i, noun) in nouns
            .iter()
            .filter(|n| n.tag_name().name() != "Conference")
            .enumerate()
        {
            let sid = self.next_sid("CA");
            // One leg answers; the others ring and are canceled.
            let status = match (outcome, i) {
                (CallStatus::Completed, 0) => CallStatus::Completed,
                (CallStatus::Completed, _) => CallStatus::Canceled,
                (other, _) => other,
            };
            if status == CallStatus::Completed {
                answered_sid = Some(sid.clone());
            }
            self.call
                .legs
                .push(dialled_leg(&self.script, noun, sid, status));
        }
        let answered = room.is_some() || outcome == CallStatus::Completed;
        let recorded = attr("record").is_some_and(|r| r != "do-not-record" && r != "false")
            || nouns
                .iter()
                .any(|n| n.attribute("record") == Some("record-from-start"));
        if answered && recorded {
            let url = attr("recordingStatusCallback").or_else(|| {
                nouns
                    .iter()
                    .find_map(|n| n.attribute("recordingStatusCallback").map(str::to_owned))
            });
            if let Some(url) = url {
                self.children += 1;
                let source = if room.is_some() {
                    "Conference"
                } else {
                    "DialVerb"
                };
                let requested =
                    recording(&self.script, &url, self.children, self.account_sid, source);
                self.call.requested.push(requested);
            }
        }
        if let Some(room) = room {
            let sid = self.next_sid("CF");
            let events = room_events(&self.script, room, &sid, self.account_sid);
            self.call.requested.extend(events);
        }
        let dial_status = match outcome {
            _ if room.is_some() => "completed",
            CallStatus::Completed => "completed",
            other => other.as_str(),
        };
        match attr("action") {
            Some(url) => {
                let mut extra = vec![("DialCallStatus".to_owned(), dial_status.to_owned())];
                if let Some(sid) = answered_sid {
                    extra.push(("DialCallSid".into(), sid));
                    extra.push(("DialCallDuration".into(), self.script.talk_secs.to_string()));
                }
                Then::Stop(Some(VoiceRequest { url, extra }))
            }
            // Without an action the call ends when the far end hangs up.
            None if answered => Then::Stop(None),
            None => Then::NextVerb,
        }
    }

    /// Leaves a voicemail: its recording callback, Twilio's transcription when asked for,
    /// then the action URL with the recording's params.
    fn record(&mut self, verb: roxmltree::Node<'_, '_>) -> Option<VoiceRequest> {
        let attr = |name: &str| verb.attribute(name).map(str::to_owned);
        self.children += 1;
        let recording = recording(
            &self.script,
            "",
            self.children,
            self.account_sid,
            "RecordVerb",
        );
        if let Some(url) = attr("recordingStatusCallback") {
            self.call.requested.push(Requested {
                url,
                ..recording.clone()
            });
        }
        if attr("transcribe").as_deref() == Some("true")
            && let Some(url) = attr("transcribeCallback")
        {
            self.call.requested.push(transcription(&recording, url));
        }
        attr("action").map(|url| VoiceRequest {
            url,
            extra: recording
                .params
                .iter()
                .filter(|(k, _)| k.starts_with("Recording"))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain([("Digits".to_owned(), "#".to_owned())])
                .collect(),
        })
    }
}

/// Twilio's `<Record transcribe>` callback for a recording.
fn transcription(recording: &Requested, url: String) -> Requested {
    let mut params: Vec<(String, String)> = recording
        .params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let recording_sid = recording.params.get("RecordingSid").unwrap_or_default();
    params.push((
        "TranscriptionSid".into(),
        format!("TR{}", &recording_sid[2..]),
    ));
    params.push(("TranscriptionStatus".into(), "completed".into()));
    params.push((
        "TranscriptionText".into(),
        "Hi, please call me back about my order.".into(),
    ));
    Requested {
        url,
        params: Params::new(params),
    }
}

fn dialled_leg(
    script: &Script,
    noun: &roxmltree::Node<'_, '_>,
    sid: String,
    status: CallStatus,
) -> Leg {
    let to = match noun.tag_name().name() {
        "Client" => format!("client:{}", noun.text().unwrap_or_default().trim()),
        _ => noun.text().unwrap_or_default().trim().to_owned(),
    };
    let statuses = match status {
        CallStatus::Completed => vec![
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
        ],
        CallStatus::Failed => vec![CallStatus::Initiated, CallStatus::Failed],
        other => vec![CallStatus::Initiated, CallStatus::Ringing, other],
    };
    Leg {
        call_sid: sid,
        parent_call_sid: Some(script.call_sid.clone()),
        from: script.to.clone(),
        to,
        statuses,
        status_callback: noun.attribute("statusCallback").map(str::to_owned),
        events: noun
            .attribute("statusCallbackEvent")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        talk_secs: script.talk_secs,
    }
}

type RoomEventPlan<'a> = (&'static str, &'static str, Vec<(&'a str, &'a str)>);

/// The room events a `<Conference>` noun asked for (`statusCallbackEvent`, a subset of
/// `start end join leave mute hold modify speaker announcement`), as Twilio posts them for a
/// caller alone in the room: it joins (and, `startConferenceOnEnter` being true, starts the
/// room), talks, hangs up, and the room ends with its last participant. Each event carries
/// the room's params and, for a participant, its state; `SequenceNumber` counts the room's
/// events from 1 (<https://www.twilio.com/docs/voice/twiml/conference#attributes-statuscallback-parameters>).
/// The caller is alone because the stand-in plays each call on its own, not in real time.
/// `Timestamp` is added when the call is placed in time (`simulate::stamp_room_events`).
fn room_events(
    script: &Script,
    room: &roxmltree::Node<'_, '_>,
    conference_sid: &str,
    account_sid: &str,
) -> Vec<Requested> {
    let Some(url) = room.attribute("statusCallback") else {
        return Vec::new();
    };
    let asked: Vec<&str> = room
        .attribute("statusCallbackEvent")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let starts = room.attribute("startConferenceOnEnter") != Some("false");
    let ends = room.attribute("endConferenceOnExit") == Some("true");
    let muted = room.attribute("muted") == Some("true");
    let name = room.text().unwrap_or_default().trim();
    let participant = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut params = vec![
            ("CallSid", script.call_sid.as_str()),
            ("Muted", if muted { "true" } else { "false" }),
            ("Hold", "false"),
            ("Coaching", "false"),
            ("EndConferenceOnExit", if ends { "true" } else { "false" }),
            (
                "StartConferenceOnEnter",
                if starts { "true" } else { "false" },
            ),
        ];
        params.extend_from_slice(extra);
        params
    };
    // (the word that asks for it, the event, its params beyond the room's)
    let happened: Vec<RoomEventPlan<'_>> = [
        Some(("join", "participant-join", participant(&[]))),
        starts.then(|| ("start", "conference-start", Vec::new())),
        Some((
            "leave",
            "participant-leave",
            participant(&[
                ("ReasonParticipantLeft", "participant_hung_up"),
                ("ParticipantCallStatus", "completed"),
            ]),
        )),
        Some((
            "end",
            "conference-end",
            vec![
                (
                    "ReasonConferenceEnded",
                    if ends {
                        "participant-with-end-conference-on-exit-left"
                    } else {
                        "last-participant-left"
                    },
                ),
                ("CallSidEndingConference", script.call_sid.as_str()),
            ],
        )),
    ]
    .into_iter()
    .flatten()
    .collect();
    happened
        .into_iter()
        .filter(|(word, _, _)| asked.contains(word))
        .enumerate()
        .map(|(i, (_, event, extra))| {
            let seq = (i + 1).to_string();
            let params: Params = [
                ("AccountSid", account_sid),
                ("ConferenceSid", conference_sid),
                ("FriendlyName", name),
                ("StatusCallbackEvent", event),
                ("SequenceNumber", seq.as_str()),
            ]
            .into_iter()
            .chain(extra)
            .collect();
            Requested {
                url: url.to_owned(),
                params,
            }
        })
        .collect()
}

/// The recording-status callback Twilio posts when a recording is ready.
fn recording(script: &Script, url: &str, n: u128, account_sid: &str, source: &str) -> Requested {
    let sid = format!("RE{:032x}", script.sid_seed.wrapping_add(n));
    let media =
        format!("https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{sid}");
    let params: Params = [
        ("AccountSid", account_sid.to_owned()),
        ("CallSid", script.call_sid.clone()),
        ("RecordingSid", sid),
        ("RecordingUrl", media),
        ("RecordingStatus", "completed".to_owned()),
        ("RecordingDuration", script.talk_secs.to_string()),
        // <Record> is mono; Dial and Conference recordings here are dual (caller, agent).
        (
            "RecordingChannels",
            if source == "RecordVerb" { "1" } else { "2" }.to_owned(),
        ),
        ("RecordingSource", source.to_owned()),
    ]
    .into_iter()
    .collect();
    Requested {
        url: url.to_owned(),
        params,
    }
}
