//! Call flows as configuration (`config/flows.toml`): what the voice webhook answers.
//!
//! The file is read into typed flows and checked as a whole; every problem is reported with
//! the line it is on, so a bad edit is caught by `make test` (and `voicectl flows check`)
//! before it ships. [`Flows::render`] turns a flow and a step of the call into TwiML.

mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

pub use render::{Rendered, Step, StepError, Urls, safe_twiml};

/// The flows the functions ship with.
pub const BUILT_IN: &str = include_str!("../../../config/flows.toml");
pub const BUILT_IN_PATH: &str = "config/flows.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsFile {
    routes: Routes,
    #[serde(default)]
    voice: SayStyle,
    fallback: Fallback,
    flows: FlowsByName,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Routes {
    default: Option<Spanned<String>>,
    softphone: Option<Spanned<String>>,
    #[serde(default)]
    numbers: BTreeMap<String, Spanned<String>>,
}

/// The voice and language of every `<Say>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayStyle {
    pub voice: Option<String>,
    pub language: Option<String>,
}

/// What a caller hears when something goes wrong: the message, then the flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub message: String,
    pub flow: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Flow {
    Forward(Forward),
    Menu(Menu),
    Voicemail(Voicemail),
    Conference(ConferenceRoom),
    Softphone(Softphone),
}

impl Flow {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Forward(_) => "forward",
            Self::Menu(_) => "menu",
            Self::Voicemail(_) => "voicemail",
            Self::Conference(_) => "conference",
            Self::Softphone(_) => "softphone",
        }
    }
}

/// Announce, then ring one or more numbers / clients / SIP URIs at once; on busy,
/// no-answer or failed, go to `fallback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    pub announce: Option<String>,
    /// Said first when the call will be recorded.
    pub consent: Option<String>,
    /// `+E164`, `client:identity` or `sip:user@host`.
    pub dial: Vec<String>,
    /// Defaults to the number that was called.
    pub caller_id: Option<String>,
    #[serde(default = "default_ring_timeout")]
    pub timeout: u32,
    #[serde(default = "yes")]
    pub record: bool,
    pub fallback: String,
}

/// An IVR menu: a prompt, choices by digits and/or speech, and bounded retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    pub prompt: String,
    /// `dtmf`, `speech` or `dtmf speech`.
    #[serde(default = "dtmf")]
    pub input: String,
    #[serde(default = "default_gather_timeout")]
    pub timeout: u32,
    pub retries: u32,
    pub no_input: String,
    pub invalid: String,
    pub fallback: String,
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub digits: Option<String>,
    #[serde(default)]
    pub speech: Vec<String>,
    pub flow: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voicemail {
    pub prompt: String,
    pub max_length: u32,
    #[serde(default = "hash_key")]
    pub finish_on_key: String,
    #[serde(default)]
    pub transcribe: bool,
    pub goodbye: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConferenceRoom {
    pub announce: Option<String>,
    pub room: String,
    #[serde(default = "yes")]
    pub start_on_enter: bool,
    #[serde(default)]
    pub end_on_exit: bool,
    #[serde(default = "yes")]
    pub beep: bool,
    #[serde(default)]
    pub record: bool,
}

/// Outbound calls from `client:` identities: Dial the requested `To` from `caller_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softphone {
    pub caller_id: String,
    /// The countries (ISO 3166 regions, `US`) browser users may call, each number placed by
    /// libphonenumber (`twilio::destination`); empty allows only other clients.
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// The number types they may call there; empty: ordinary-rate ones (fixed line, mobile,
    /// toll free), never premium-rate or shared-cost.
    #[serde(default)]
    pub allowed_number_types: Vec<crate::twilio::destination::NumberType>,
    /// No longer read: a prefix cannot tell +1 876 Jamaica or a 900 number from the US.
    /// Kept so that a flows file with it gets that reason rather than "unknown field".
    #[serde(default)]
    pub allowed_prefixes: Option<Vec<String>>,
    #[serde(default = "default_ring_timeout")]
    pub timeout: u32,
    #[serde(default = "yes")]
    pub record: bool,
}

fn default_ring_timeout() -> u32 {
    30
}
fn default_gather_timeout() -> u32 {
    5
}
fn yes() -> bool {
    true
}
fn dtmf() -> String {
    "dtmf".into()
}
fn hash_key() -> String {
    "#".into()
}

/// Checked flows, ready to render.
#[derive(Debug, Clone)]
pub struct Flows {
    default: Option<String>,
    softphone: Option<String>,
    numbers: BTreeMap<String, String>,
    pub voice: SayStyle,
    pub fallback_message: String,
    pub fallback_flow: String,
    flows: BTreeMap<String, Flow>,
}

/// Every problem in a flows file, each with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FlowsError {
    pub file: String,
    pub problems: Vec<(usize, String)>,
}

impl fmt::Display for FlowsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|(line, problem)| format!("{}:{line}: {problem}", self.file))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl Flows {
    /// The flows in `config/flows.toml`, embedded at build time: read, not checked again.
    /// The checks load libphonenumber's metadata for the country codes (about 80 ms of a cold
    /// start, `make bench`), and this file cannot ship unchecked: `make test` checks it
    /// (`the_built_in_flows_pass_every_check`), and so does `voicectl flows check`.
    pub fn built_in() -> Result<Self, FlowsError> {
        Self::read(BUILT_IN, BUILT_IN_PATH, false)
    }

    /// Reads and checks a flows file; `file` names it in errors.
    pub fn parse(source: &str, file: &str) -> Result<Self, FlowsError> {
        Self::read(source, file, true)
    }

    fn read(source: &str, file: &str, check: bool) -> Result<Self, FlowsError> {
        let line_of = |span: Range<usize>| {
            1 + source.as_bytes()[..span.start.min(source.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        };
        let parsed: FlowsFile = toml::from_str(source).map_err(|e| FlowsError {
            file: file.into(),
            problems: vec![(e.span().map_or(1, line_of), e.message().trim().to_owned())],
        })?;
        let mut problems = Vec::new();
        if check {
            validate(&parsed, &mut |span, problem| {
                problems.push((line_of(span), problem))
            });
        }
        if !problems.is_empty() {
            problems.sort();
            return Err(FlowsError {
                file: file.into(),
                problems,
            });
        }
        Ok(Self {
            default: parsed.routes.default.map(Spanned::into_inner),
            softphone: parsed.routes.softphone.map(Spanned::into_inner),
            numbers: parsed
                .routes
                .numbers
                .into_iter()
                .map(|(number, flow)| (number, flow.into_inner()))
                .collect(),
            voice: parsed.voice,
            fallback_message: parsed.fallback.message,
            fallback_flow: parsed.fallback.flow.into_inner(),
            flows: parsed
                .flows
                .into_iter()
                .map(|(name, flow)| (name, flow.into_inner()))
                .collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Flow> {
        self.flows.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.flows.keys().map(String::as_str)
    }

    /// The flow for a new call: softphone calls by their `client:` caller, others by the
    /// number called. `None` when nothing is configured for it.
    pub fn route(&self, from: Option<&str>, to: Option<&str>) -> Option<&str> {
        if from.is_some_and(|f| f.starts_with("client:")) {
            return self.softphone.as_deref();
        }
        to.and_then(|to| self.numbers.get(to))
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// The numbers with a flow of their own, for previews and the demo.
    pub fn numbers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.numbers.iter().map(|(n, f)| (n.as_str(), f.as_str()))
    }
}

/// A flow name goes into action URLs unescaped, so it is kept to URL-safe characters.
fn is_flow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A dial target: `+E164`, `client:identity` or `sip:user@host`.
fn is_dial_target(target: &str) -> bool {
    is_e164(target)
        || target
            .strip_prefix("client:")
            .is_some_and(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        || target
            .strip_prefix("sip:")
            .is_some_and(|uri| uri.contains('@') && !uri.contains(char::is_whitespace))
}

fn validate(file: &FlowsFile, report: &mut dyn FnMut(Range<usize>, String)) {
    validate_references(file, report);
    validate_routes(file, report);
    validate_fallback(file, report);
    for (name, flow) in &file.flows {
        let span = flow.span();
        let problem = &mut |p: String| report(span.clone(), format!("flow {name:?}: {p}"));
        if !is_flow_name(name) {
            problem("names use a-z, 0-9, - and _ (they go into action URLs)".into());
        }
        match flow.get_ref() {
            Flow::Forward(f) => validate_forward(f, &file.flows, problem),
            Flow::Menu(m) => validate_menu(m, &file.flows, problem),
            Flow::Voicemail(v) => validate_voicemail(v, problem),
            Flow::Conference(c) => {
                if c.room.trim().is_empty() {
                    problem("room is empty".into());
                }
            }
            Flow::Softphone(s) => validate_softphone(s, problem),
        }
    }
    fallback_cycles(file, report);
}

type FlowsByName = BTreeMap<String, Spanned<Flow>>;

/// A flow names another (its `what`): an unknown one is a problem.
fn refers_to(flows: &FlowsByName, what: &str, target: &str, problem: &mut dyn FnMut(String)) {
    if !flows.contains_key(target) {
        problem(format!("{what} names unknown flow {target:?}"));
    }
}

/// Every flow the routes and the fallback name exists.
fn validate_references(file: &FlowsFile, report: &mut dyn FnMut(Range<usize>, String)) {
    let flows = &file.flows;
    let mut must_exist = |span: Range<usize>, what: &str, name: &str| {
        if !flows.contains_key(name) {
            report(span, format!("{what} names unknown flow {name:?}"));
        }
    };
    if let Some(default) = &file.routes.default {
        must_exist(default.span(), "routes.default", default.get_ref());
    }
    if let Some(softphone) = &file.routes.softphone {
        must_exist(softphone.span(), "routes.softphone", softphone.get_ref());
    }
    for (number, flow) in &file.routes.numbers {
        must_exist(
            flow.span(),
            &format!("routes.numbers.{number:?}"),
            flow.get_ref(),
        );
    }
    must_exist(
        file.fallback.flow.span(),
        "fallback.flow",
        file.fallback.flow.get_ref(),
    );
}

/// The numbers are E.164, and the softphone route names a softphone flow.
fn validate_routes(file: &FlowsFile, report: &mut dyn FnMut(Range<usize>, String)) {
    let flows = &file.flows;
    for (number, flow) in &file.routes.numbers {
        if !is_e164(number) {
            report(
                flow.span(),
                format!("{number:?} is not an E.164 number (+14155550100)"),
            );
        }
    }
    if let Some(softphone) = &file.routes.softphone
        && flows
            .get(softphone.get_ref())
            .is_some_and(|f| !matches!(f.get_ref(), Flow::Softphone(_)))
    {
        report(
            softphone.span(),
            "routes.softphone must name a softphone flow".into(),
        );
    }
}

/// The fallback plays for anyone: no input, no caller number needed, and a message.
fn validate_fallback(file: &FlowsFile, report: &mut dyn FnMut(Range<usize>, String)) {
    let flows = &file.flows;
    if let Some(fallback) = flows.get(file.fallback.flow.get_ref())
        && matches!(fallback.get_ref(), Flow::Softphone(_) | Flow::Menu(_))
    {
        report(
            file.fallback.flow.span(),
            "fallback.flow must need no input and no caller number: use a voicemail, forward or conference flow".into(),
        );
    }
    if file.fallback.message.trim().is_empty() {
        report(
            file.fallback.flow.span(),
            "fallback.message is empty".into(),
        );
    }
}

fn validate_forward(f: &Forward, flows: &FlowsByName, problem: &mut dyn FnMut(String)) {
    if f.dial.is_empty() {
        problem("dial lists nobody".into());
    }
    for target in &f.dial {
        if !is_dial_target(target) {
            problem(format!(
                "dial target {target:?} is not +E164, client:identity or sip:user@host"
            ));
        }
    }
    if let Some(id) = &f.caller_id
        && !is_e164(id)
    {
        problem(format!("caller_id {id:?} is not an E.164 number"));
    }
    if !(5..=600).contains(&f.timeout) {
        problem(format!("timeout {} is outside 5..=600 seconds", f.timeout));
    }
    refers_to(flows, "fallback", &f.fallback, problem);
}

fn validate_menu(m: &Menu, flows: &FlowsByName, problem: &mut dyn FnMut(String)) {
    if m.prompt.trim().is_empty() {
        problem("prompt is empty".into());
    }
    let (dtmf, speech) = match m.input.as_str() {
        "dtmf" => (true, false),
        "speech" => (false, true),
        "dtmf speech" | "speech dtmf" => (true, true),
        other => {
            problem(format!(
                "input {other:?} is not dtmf, speech or \"dtmf speech\""
            ));
            (true, true)
        }
    };
    if m.retries > 5 {
        problem(format!(
            "retries {} is over 5: callers give up long before",
            m.retries
        ));
    }
    if !(1..=60).contains(&m.timeout) {
        problem(format!("timeout {} is outside 1..=60 seconds", m.timeout));
    }
    if m.choices.is_empty() {
        problem("has no choices".into());
    }
    let mut seen = BTreeSet::new();
    for (i, choice) in m.choices.iter().enumerate() {
        let n = i + 1;
        match &choice.digits {
            Some(d) if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit() || b == b'*') => {
                problem(format!("choice {n}: digits {d:?} are not 0-9 or *"));
            }
            Some(d) if !seen.insert(d.clone()) => {
                problem(format!("choice {n}: digits {d:?} are used twice"));
            }
            None if !speech => problem(format!("choice {n} has no digits for a dtmf menu")),
            _ => {}
        }
        if dtmf && !speech && !choice.speech.is_empty() {
            problem(format!(
                "choice {n} has speech words but the menu listens for dtmf only"
            ));
        }
        if speech && choice.digits.is_none() && choice.speech.is_empty() {
            problem(format!("choice {n} has neither digits nor speech"));
        }
        refers_to(flows, &format!("choice {n}"), &choice.flow, problem);
    }
    refers_to(flows, "fallback", &m.fallback, problem);
}

fn validate_voicemail(v: &Voicemail, problem: &mut dyn FnMut(String)) {
    if !(1..=14_400).contains(&v.max_length) {
        problem(format!(
            "max_length {} is outside 1..=14400 seconds",
            v.max_length
        ));
    }
    if v.finish_on_key.is_empty()
        || !v
            .finish_on_key
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        problem(format!(
            "finish_on_key {:?} is not made of 0-9, * and #",
            v.finish_on_key
        ));
    }
}

fn validate_softphone(s: &Softphone, problem: &mut dyn FnMut(String)) {
    if !is_e164(&s.caller_id) {
        problem(format!(
            "caller_id {:?} is not an E.164 number",
            s.caller_id
        ));
    }
    if s.allowed_prefixes.is_some() {
        problem(
            "allowed_prefixes is replaced by allowed_countries: a prefix such as +1 \
                 also admits Caribbean countries and premium-rate numbers"
                .into(),
        );
    }
    for country in &s.allowed_countries {
        if !crate::twilio::destination::is_known_country(country) {
            problem(format!(
                "allowed country {country:?} is not an ISO 3166 region code"
            ));
        }
    }
}

/// Fallbacks chain (a forward that is not answered goes to its fallback, which may be
/// another forward): a chain must end, or a caller nobody answers would ring forever.
fn fallback_cycles(file: &FlowsFile, report: &mut dyn FnMut(Range<usize>, String)) {
    let next = |name: &str| match file.flows.get(name).map(Spanned::get_ref) {
        Some(Flow::Forward(f)) => Some(f.fallback.as_str()),
        Some(Flow::Menu(m)) => Some(m.fallback.as_str()),
        _ => None,
    };
    for (start, flow) in &file.flows {
        let mut seen = BTreeSet::from([start.as_str()]);
        let mut at = start.as_str();
        while let Some(to) = next(at) {
            if to == start {
                report(
                    flow.span(),
                    format!("flow {start:?}: its fallbacks loop back to it"),
                );
                break;
            }
            if !seen.insert(to) {
                break;
            }
            at = to;
        }
    }
}

#[cfg(test)]
mod tests;
