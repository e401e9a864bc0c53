//! One step of a call flow as TwiML. Rendering never fails: whatever goes wrong (an unknown
//! flow or number, a refused softphone destination) becomes the apology and the fallback
//! flow, because a live caller must always get something to hear.
//!
//! The steps are the voice webhook's routes. IVR state (which menu, how many retries so far)
//! travels in the action URL's query, so no step touches a database; Twilio signs those URLs
//! like any other.

use crate::events::EventKind;
use crate::twilio::twiml::{
    Client, Conference, Dial, DialNoun, Gather, LegCallbacks, Method, Number, Prompt, Record,
    Redirect, Say, Sip, Verb, VoiceResponse,
};
use crate::twilio::{Params, destination, identity, overrides};

use super::{ConferenceRoom, Flow, Flows, Forward, Menu, Softphone, Voicemail, is_e164};

/// The call-progress events asked for on every dialled leg.
const LEG_EVENTS: &str = "initiated ringing answered completed";
/// The recording events asked for on every recording (in-progress is recorded only).
const RECORDING_EVENTS: &str = "in-progress completed absent";
/// Every room event a participant's story needs (TwiML `<Conference statusCallbackEvent>`;
/// `speaker` and `announcement` are left out: they say nothing about who was there).
const ROOM_EVENTS: &str = "start end join leave mute hold modify";

/// The URLs TwiML points Twilio at, all under the public base URL that signatures use, each
/// with the connection overrides of its route (`twilio::overrides`): Twilio retries a
/// callback or a voice request only as its URL's fragment says.
#[derive(Debug, Clone)]
pub struct Urls {
    base: String,
    status: String,
    recording: String,
    transcription: String,
    conference: String,
}

impl Urls {
    pub fn new(public_base_url: &str) -> Self {
        let base = public_base_url.trim_end_matches('/').to_owned();
        let callback = |path: &str| format!("{base}{path}#{}", overrides::CALLBACK);
        Self {
            status: callback("/twilio/status"),
            recording: callback("/twilio/recording"),
            transcription: callback("/twilio/transcription"),
            conference: callback(EventKind::ConferenceStatus.webhook_path()),
            base,
        }
    }

    /// A voice route's URL (path and query) with the voice overrides.
    fn voice_route(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}#{}", self.base, overrides::VOICE)
    }

    pub fn voice(&self, flow: &str) -> String {
        self.voice_route(&format!("/twilio/voice?flow={flow}"))
    }

    pub fn menu(&self, flow: &str, no_input: u32, invalid: u32) -> String {
        self.voice_route(&format!(
            "/twilio/voice/menu?flow={flow}&no_input={no_input}&invalid={invalid}"
        ))
    }

    pub fn dial_done(&self, flow: &str) -> String {
        self.voice_route(&format!("/twilio/voice/dial?flow={flow}"))
    }

    pub fn recorded(&self, flow: &str) -> String {
        self.voice_route(&format!("/twilio/voice/recorded?flow={flow}"))
    }

    fn leg_callbacks(&self) -> LegCallbacks {
        LegCallbacks {
            status_callback: Some(self.status.clone()),
            status_callback_event: Some(LEG_EVENTS.into()),
            status_callback_method: Some(Method::Post),
        }
    }
}

/// Which request of a call this is, from the voice webhook's path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `/twilio/voice`: a new call (routed by number), or `?flow=` to enter a given flow.
    Enter { flow: Option<String> },
    /// `/twilio/voice/menu`: a menu's `<Gather>` answered (or timed out, via its Redirect).
    Menu {
        flow: String,
        no_input: u32,
        invalid: u32,
    },
    /// `/twilio/voice/dial`: a `<Dial>` ended; `DialCallStatus` says how.
    DialDone { flow: String },
    /// `/twilio/voice/recorded`: a voicemail `<Record>` ended.
    Recorded { flow: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("no voice route at {0}")]
    UnknownPath(String),
    #[error("query: {0}")]
    BadQuery(String),
}

impl Step {
    pub fn from_request(raw_path: &str, raw_query: &str) -> Result<Self, StepError> {
        let query = Params::from_form(raw_query.as_bytes())
            .map_err(|e| StepError::BadQuery(e.to_string()))?;
        let flow = || {
            query
                .get("flow")
                .map(str::to_owned)
                .ok_or_else(|| StepError::BadQuery("no flow".into()))
        };
        let count = |name: &str| -> Result<u32, StepError> {
            query.get(name).map_or(Ok(0), |n| {
                n.parse()
                    .map_err(|_| StepError::BadQuery(format!("{name}={n:?} is not a count")))
            })
        };
        let route = raw_path.trim_end_matches('/');
        match route.rsplit_once("/twilio/voice").map(|(_, rest)| rest) {
            Some("") => Ok(Self::Enter {
                flow: query.get("flow").map(str::to_owned),
            }),
            Some("/menu") => Ok(Self::Menu {
                flow: flow()?,
                no_input: count("no_input")?,
                invalid: count("invalid")?,
            }),
            Some("/dial") => Ok(Self::DialDone { flow: flow()? }),
            Some("/recorded") => Ok(Self::Recorded { flow: flow()? }),
            _ => Err(StepError::UnknownPath(raw_path.into())),
        }
    }
}

/// A step's answer, with what happened for the logs and the `call.started` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub twiml: VoiceResponse,
    /// The flow that answered (the fallback flow after an apology).
    pub flow: String,
    /// `entered`, `chose`, `no-input`, `invalid`, `retries-exhausted`, `dial-fallback`,
    /// `goodbye`, `hangup`, `refused`, or `apology` when something went wrong.
    pub outcome: &'static str,
    /// Why the caller got the apology, for a loud log line.
    pub problem: Option<String>,
}

/// The answer when even the flows could not be read: say sorry and hang up.
pub fn safe_twiml(message: &str) -> VoiceResponse {
    VoiceResponse::new()
        .push(Say::new(message))
        .push(Verb::Hangup)
}

struct Builder<'a> {
    flows: &'a Flows,
    urls: &'a Urls,
    params: &'a Params,
    twiml: VoiceResponse,
}

impl Flows {
    /// The TwiML for one step of a call.
    pub fn render(&self, step: &Step, params: &Params, urls: &Urls) -> Rendered {
        let mut b = Builder {
            flows: self,
            urls,
            params,
            twiml: VoiceResponse::new(),
        };
        match b.step(step) {
            Ok((flow, outcome)) => Rendered {
                twiml: b.twiml,
                flow,
                outcome,
                problem: None,
            },
            Err(problem) => self.apology(problem, params, urls),
        }
    }

    /// The answer when a step cannot be followed: the fallback message, then the fallback
    /// flow (checked at load to exist and to need no input).
    pub fn apology(&self, problem: String, params: &Params, urls: &Urls) -> Rendered {
        let mut b = Builder {
            flows: self,
            urls,
            params,
            twiml: VoiceResponse::new(),
        };
        b.say(&self.fallback_message);
        if b.enter(&self.fallback_flow).is_err() {
            b.twiml.verbs.push(Verb::Hangup);
        }
        Rendered {
            twiml: b.twiml,
            flow: self.fallback_flow.clone(),
            outcome: "apology",
            problem: Some(problem),
        }
    }
}

type StepResult = Result<(String, &'static str), String>;

impl<'a> Builder<'a> {
    /// A flow borrowed from the flows, not from the builder, so the builder stays writable.
    fn flow(&self, name: &str) -> Result<&'a Flow, String> {
        self.flows
            .get(name)
            .ok_or_else(|| format!("unknown flow {name:?}"))
    }

    /// A `<Say>` in the configured voice.
    fn styled_say(&self, text: &str) -> Say {
        let style = &self.flows.voice;
        Say {
            text: text.to_owned(),
            voice: style.voice.clone(),
            language: style.language.clone(),
            loop_: None,
        }
    }

    fn say(&mut self, text: &str) {
        let say = self.styled_say(text);
        self.twiml.verbs.push(Verb::Say(say));
    }

    fn step(&mut self, step: &Step) -> StepResult {
        match step {
            Step::Enter { flow } => {
                let name = match flow {
                    Some(name) => name.as_str(),
                    None => self
                        .flows
                        .route(self.params.get("From"), self.params.get("To"))
                        .ok_or_else(|| {
                            format!(
                                "no flow for number {:?} and no default route",
                                self.params.get("To").unwrap_or_default()
                            )
                        })?,
                };
                let outcome = self.enter(name)?;
                Ok((name.to_owned(), outcome))
            }
            Step::Menu {
                flow,
                no_input,
                invalid,
            } => {
                let Flow::Menu(menu) = self.flow(flow)? else {
                    return Err(format!("flow {flow:?} is not a menu"));
                };
                self.answer_menu(flow, menu, *no_input, *invalid)
            }
            Step::DialDone { flow } => {
                let fallback = match self.flow(flow)? {
                    Flow::Forward(f) => Some(f.fallback.as_str()),
                    Flow::Softphone(_) => None,
                    _ => return Err(format!("flow {flow:?} does not dial")),
                };
                match self.params.get("DialCallStatus") {
                    Some("completed" | "answered" | "canceled") => {
                        self.twiml.verbs.push(Verb::Hangup);
                        Ok((flow.clone(), "hangup"))
                    }
                    // busy, no-answer, failed: nobody took the call.
                    _ => match fallback {
                        Some(next) => {
                            self.enter(next)?;
                            Ok((next.to_owned(), "dial-fallback"))
                        }
                        None => {
                            self.say("The call could not be completed.");
                            self.twiml.verbs.push(Verb::Hangup);
                            Ok((flow.clone(), "hangup"))
                        }
                    },
                }
            }
            Step::Recorded { flow } => {
                let Flow::Voicemail(v) = self.flow(flow)? else {
                    return Err(format!("flow {flow:?} is not a voicemail"));
                };
                self.say(&v.goodbye);
                self.twiml.verbs.push(Verb::Hangup);
                Ok((flow.clone(), "goodbye"))
            }
        }
    }

    /// The TwiML that starts a flow.
    fn enter(&mut self, name: &str) -> Result<&'static str, String> {
        match self.flow(name)? {
            Flow::Forward(f) => self.forward(name, f),
            Flow::Menu(m) => self.menu(name, m, 0, 0),
            Flow::Voicemail(v) => self.voicemail(name, v),
            Flow::Conference(c) => self.conference(c),
            Flow::Softphone(s) => return Ok(self.softphone(name, s)),
        }
        Ok("entered")
    }

    fn record_mode(record: bool) -> Option<String> {
        record.then(|| "record-from-answer-dual".to_owned())
    }

    fn dial(&self, flow: &str, caller_id: Option<String>, timeout: u32, record: bool) -> Dial {
        Dial {
            action: Some(self.urls.dial_done(flow)),
            method: Some(Method::Post),
            caller_id,
            timeout: Some(timeout),
            record: Self::record_mode(record),
            recording_status_callback: record.then(|| self.urls.recording.clone()),
            recording_status_callback_event: record.then(|| RECORDING_EVENTS.to_owned()),
            ..Dial::default()
        }
    }

    fn noun(&self, target: &str) -> DialNoun {
        let callbacks = self.urls.leg_callbacks();
        if let Some(identity) = target.strip_prefix("client:") {
            DialNoun::Client(Client {
                identity: identity.to_owned(),
                url: None,
                callbacks,
            })
        } else if target.starts_with("sip:") {
            DialNoun::Sip(Sip {
                uri: target.to_owned(),
                callbacks,
                ..Sip::default()
            })
        } else {
            DialNoun::Number(Number {
                number: target.to_owned(),
                callbacks,
                ..Number::default()
            })
        }
    }

    fn forward(&mut self, name: &str, f: &Forward) {
        if let Some(announce) = &f.announce {
            self.say(announce);
        }
        if let (true, Some(consent)) = (f.record, &f.consent) {
            self.say(consent);
        }
        // Twilio only lets a call out from one of our numbers: the one that was called.
        let caller_id = f.caller_id.clone().or_else(|| {
            self.params
                .get("To")
                .filter(|to| is_e164(to))
                .map(str::to_owned)
        });
        let mut dial = self.dial(name, caller_id, f.timeout, f.record);
        dial.nouns = f.dial.iter().map(|t| self.noun(t)).collect();
        self.twiml.verbs.push(Verb::Dial(dial));
    }

    fn menu(&mut self, name: &str, m: &Menu, no_input: u32, invalid: u32) {
        let action = self.urls.menu(name, no_input, invalid);
        let speech = m.input.contains("speech");
        let words: Vec<&str> = m
            .choices
            .iter()
            .flat_map(|c| c.speech.iter().map(String::as_str))
            .collect();
        let longest = m
            .choices
            .iter()
            .filter_map(|c| c.digits.as_ref().map(String::len))
            .max();
        let shortest = m
            .choices
            .iter()
            .filter_map(|c| c.digits.as_ref().map(String::len))
            .min();
        let style = &self.flows.voice;
        let gather = Gather {
            input: Some(m.input.clone()),
            action: Some(action.clone()),
            method: Some(Method::Post),
            timeout: Some(m.timeout),
            // With every choice the same length, Twilio need not wait for a finish key.
            num_digits: longest.filter(|&l| Some(l) == shortest).map(|l| l as u32),
            speech_timeout: speech.then(|| "auto".to_owned()),
            hints: (speech && !words.is_empty()).then(|| words.join(", ")),
            language: speech.then(|| style.language.clone()).flatten(),
            prompts: vec![Prompt::Say(self.styled_say(&m.prompt))],
            ..Gather::default()
        };
        self.twiml.verbs.push(Verb::Gather(gather));
        // Reached only when the Gather heard nothing: the same action, without input.
        self.twiml.verbs.push(Verb::Redirect(Redirect {
            url: action,
            method: Some(Method::Post),
        }));
    }

    fn answer_menu(&mut self, name: &str, m: &Menu, no_input: u32, invalid: u32) -> StepResult {
        let digits = self.params.get("Digits").filter(|d| !d.is_empty());
        let speech = self
            .params
            .get("SpeechResult")
            .filter(|s| !s.trim().is_empty());
        if digits.is_none() && speech.is_none() {
            return self.retry(name, m, &m.no_input, (no_input + 1, invalid), "no-input");
        }
        let heard = speech.map(normalize);
        let choice = m.choices.iter().find(|c| {
            digits.is_some_and(|d| c.digits.as_deref() == Some(d))
                || heard
                    .as_ref()
                    .is_some_and(|h| c.speech.iter().any(|w| h.contains(&normalize(w))))
        });
        match choice {
            Some(choice) => {
                let next = choice.flow.clone();
                self.enter(&next)?;
                Ok((next, "chose"))
            }
            None => self.retry(name, m, &m.invalid, (no_input, invalid + 1), "invalid"),
        }
    }

    /// Says why, then plays the menu again, or after `retries` of one kind goes to the
    /// menu's fallback.
    fn retry(
        &mut self,
        name: &str,
        m: &Menu,
        why: &str,
        (no_input, invalid): (u32, u32),
        outcome: &'static str,
    ) -> StepResult {
        self.say(why);
        if no_input.max(invalid) > m.retries {
            self.enter(&m.fallback)?;
            return Ok((m.fallback.clone(), "retries-exhausted"));
        }
        self.menu(name, m, no_input, invalid);
        Ok((name.to_owned(), outcome))
    }

    fn voicemail(&mut self, name: &str, v: &Voicemail) {
        self.say(&v.prompt);
        self.twiml.verbs.push(Verb::Record(Record {
            action: Some(self.urls.recorded(name)),
            method: Some(Method::Post),
            max_length: Some(v.max_length),
            finish_on_key: Some(v.finish_on_key.clone()),
            play_beep: Some(true),
            recording_status_callback: Some(self.urls.recording.clone()),
            recording_status_callback_event: Some(RECORDING_EVENTS.into()),
            transcribe: v.transcribe.then_some(true),
            transcribe_callback: v.transcribe.then(|| self.urls.transcription.clone()),
            ..Record::default()
        }));
        // Twilio skips the action when it heard nothing and goes on to the next verb.
        self.say(&v.goodbye);
        self.twiml.verbs.push(Verb::Hangup);
    }

    fn conference(&mut self, c: &ConferenceRoom) {
        if let Some(announce) = &c.announce {
            self.say(announce);
        }
        let room = Conference {
            name: c.room.clone(),
            start_conference_on_enter: Some(c.start_on_enter),
            end_conference_on_exit: Some(c.end_on_exit),
            beep: Some(c.beep.to_string()),
            record: c.record.then(|| "record-from-start".to_owned()),
            recording_status_callback: c.record.then(|| self.urls.recording.clone()),
            recording_status_callback_event: c.record.then(|| RECORDING_EVENTS.to_owned()),
            status_callback: Some(self.urls.conference.clone()),
            status_callback_event: Some(ROOM_EVENTS.to_owned()),
            status_callback_method: Some(Method::Post),
            ..Conference::default()
        };
        self.twiml.verbs.push(Verb::Dial(Dial {
            nouns: vec![DialNoun::Conference(room)],
            ..Dial::default()
        }));
    }

    /// A browser or app user calling out: `To` is whatever the client asked for, so it is
    /// checked before anything is dialled, and a refusal is said out loud (the silent
    /// failure is what makes softphone calls hard to support).
    fn softphone(&mut self, name: &str, s: &Softphone) -> &'static str {
        let to = self.params.get("To").unwrap_or_default().trim().to_owned();
        let allowed = destination::Allowed {
            countries: &s.allowed_countries,
            types: &s.allowed_number_types,
        };
        let target = if let Some(identity) = to.strip_prefix("client:") {
            identity::check(identity).is_ok().then(|| to.clone())
        } else if is_e164(&to) {
            match allowed.check(&to) {
                Ok(_) => Some(to.clone()),
                Err(refusal) => {
                    tracing::info!(flow = name, %refusal, "softphone destination refused");
                    None
                }
            }
        } else {
            None
        };
        let Some(target) = target else {
            let why = if to.is_empty() {
                "No number was dialed."
            } else {
                "Sorry, that number can't be called from here."
            };
            self.say(why);
            self.twiml.verbs.push(Verb::Hangup);
            return "refused";
        };
        let mut dial = self.dial(name, Some(s.caller_id.clone()), s.timeout, s.record);
        // The browser hears the callee's ringing, and the call is billed from the answer.
        dial.answer_on_bridge = Some(true);
        dial.nouns = vec![self.noun(&target)];
        self.twiml.verbs.push(Verb::Dial(dial));
        "entered"
    }
}

/// Lower-case words separated by single spaces and padded, so `contains` matches whole words.
fn normalize(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}
