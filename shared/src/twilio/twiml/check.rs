//! The schema check every document the stand-in and the tests read goes through.

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
