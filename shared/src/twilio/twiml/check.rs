//! The schema check every document the stand-in and the tests read goes through.

use super::attributes::names;
use super::{
    Client, Conference, Dial, Enqueue, Gather, Number, Pause, Play, Queue, Record, Redirect,
    Reject, Say, Sip,
};

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
/// The attributes are the model's fields ([`attributes::names`]), so the writer and the check
/// cannot disagree.
struct Rule {
    children: &'static [&'static str],
    attributes: Vec<String>,
    text: bool,
}

fn rule(name: &str) -> Option<Rule> {
    const VERBS: &[&str] = &[
        "Say", "Play", "Pause", "Gather", "Dial", "Record", "Redirect", "Hangup", "Reject",
        "Enqueue", "Leave",
    ];
    const NONE: &[&str] = &[];
    let (children, attributes, text) = match name {
        "Response" => (VERBS, Vec::new(), false),
        "Say" => (NONE, names::<Say>(), true),
        "Play" => (NONE, names::<Play>(), true),
        "Pause" => (NONE, names::<Pause>(), false),
        "Gather" => (&["Say", "Play", "Pause"][..], names::<Gather>(), false),
        "Dial" => (
            &["Number", "Client", "Sip", "Conference", "Queue"][..],
            names::<Dial>(),
            true,
        ),
        "Number" => (NONE, names::<Number>(), true),
        "Client" => (NONE, names::<Client>(), true),
        "Sip" => (NONE, names::<Sip>(), true),
        "Conference" => (NONE, names::<Conference>(), true),
        "Queue" => (NONE, names::<Queue>(), true),
        "Record" => (NONE, names::<Record>(), false),
        "Redirect" => (NONE, names::<Redirect>(), true),
        "Hangup" | "Leave" => (NONE, Vec::new(), false),
        "Reject" => (NONE, names::<Reject>(), false),
        "Enqueue" => (NONE, names::<Enqueue>(), true),
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
        .find(|a| !rule.attributes.iter().any(|name| name == a.name()))
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
    use super::check;

    fn doc(body: &str) -> String {
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>"#)
    }

    #[test]
    fn each_element_takes_its_own_attributes_only() {
        assert_eq!(
            check(&doc(r#"<Say voice="alice" loop="2">hi</Say>"#)),
            Ok(())
        );
        assert_eq!(
            check(&doc(r#"<Say digits="1">hi</Say>"#)),
            Err("<Say> has no attribute digits".into())
        );
        // A dial noun's flattened callbacks are its attributes; a verb's are not.
        assert_eq!(
            check(&doc(
                r#"<Dial><Number statusCallbackEvent="answered" statusCallbackMethod="GET">+14155550100</Number></Dial>"#
            )),
            Ok(())
        );
        assert_eq!(
            check(&doc(r#"<Play statusCallback="https://x">https://a</Play>"#)),
            Err("<Play> has no attribute statusCallback".into())
        );
    }

    #[test]
    fn structure_and_content_are_held_to_twiml() {
        assert!(
            check("<Response><Say>")
                .unwrap_err()
                .starts_with("not well-formed")
        );
        assert_eq!(
            check("<Document/>"),
            Err("root is <Document>, not <Response>".into())
        );
        assert_eq!(
            check(&doc("<Dance/>")),
            Err("<Dance> is not allowed inside <Response>".into())
        );
        assert_eq!(
            check(&doc("<Gather><Dial>+1</Dial></Gather>")),
            Err("<Dial> is not allowed inside <Gather>".into())
        );
        assert_eq!(
            check(&doc("<Record>text</Record>")),
            Err("<Record> takes no text".into())
        );
        assert_eq!(
            check(&doc(
                "<Dial>+14155550100<Number>+14155550101</Number></Dial>"
            )),
            Err("<Dial> lacks its content (or has both text and nouns)".into())
        );
        assert_eq!(
            check(&doc(r#"<Redirect method="POST"/>"#)),
            Err("<Redirect> lacks its content (or has both text and nouns)".into())
        );
    }
}
