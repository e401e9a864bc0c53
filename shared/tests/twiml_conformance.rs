//! Every case of the TwiML conformance vectors, built with our typed verbs, must parse to the
//! same XML tree as what the official twilio-python `VoiceResponse` emits for it; and every
//! official document must pass our schema check.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use voicehooks::twilio::twiml::{self, *};

#[derive(Deserialize)]
struct Vectors {
    count: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    description: String,
    tree: Node,
    xml: String,
}

/// The vectors' neutral description of an element.
#[derive(Deserialize)]
struct Node {
    verb: String,
    attributes: Map<String, Value>,
    text: Option<String>,
    children: Vec<Node>,
}

impl Node {
    /// The element's attributes read into one of our typed verbs or nouns: an attribute
    /// that type does not know fails here (`deny_unknown_fields`).
    fn attrs<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(Value::Object(self.attributes.clone()))
            .unwrap_or_else(|e| panic!("<{}> attributes: {e}", self.verb))
    }

    fn text(&self) -> String {
        self.text.clone().unwrap_or_default()
    }
}

fn verb(node: &Node) -> Verb {
    match node.verb.as_str() {
        "Say" => Verb::Say(Say {
            text: node.text(),
            ..node.attrs()
        }),
        "Play" => Verb::Play(Play {
            url: node.text(),
            ..node.attrs()
        }),
        "Pause" => Verb::Pause(node.attrs()),
        "Gather" => Verb::Gather(Gather {
            prompts: node
                .children
                .iter()
                .map(|c| match verb(c) {
                    Verb::Say(v) => Prompt::Say(v),
                    Verb::Play(v) => Prompt::Play(v),
                    Verb::Pause(v) => Prompt::Pause(v),
                    other => panic!("{other:?} inside Gather"),
                })
                .collect(),
            ..node.attrs()
        }),
        "Dial" => Verb::Dial(Dial {
            number: node.text(),
            nouns: node.children.iter().map(noun).collect(),
            ..node.attrs()
        }),
        "Record" => Verb::Record(node.attrs()),
        "Redirect" => Verb::Redirect(Redirect {
            url: node.text(),
            ..node.attrs()
        }),
        "Hangup" => Verb::Hangup,
        "Leave" => Verb::Leave,
        "Reject" => Verb::Reject(node.attrs()),
        "Enqueue" => Verb::Enqueue(Enqueue {
            name: node.text(),
            ..node.attrs()
        }),
        other => panic!("unknown verb {other}"),
    }
}

fn noun(node: &Node) -> DialNoun {
    match node.verb.as_str() {
        "Number" => DialNoun::Number(Number {
            number: node.text(),
            ..node.attrs()
        }),
        "Client" => DialNoun::Client(Client {
            identity: node.text(),
            ..node.attrs()
        }),
        "Sip" => DialNoun::Sip(Sip {
            uri: node.text(),
            ..node.attrs()
        }),
        "Conference" => DialNoun::Conference(Conference {
            name: node.text(),
            ..node.attrs()
        }),
        "Queue" => DialNoun::Queue(Queue {
            name: node.text(),
            ..node.attrs()
        }),
        other => panic!("unknown Dial noun {other}"),
    }
}

fn build(tree: &Node) -> VoiceResponse {
    assert_eq!(tree.verb, "Response");
    VoiceResponse {
        verbs: tree.children.iter().map(verb).collect(),
    }
}

/// An element as a comparable value: name, sorted attributes, text (none = empty), children.
#[derive(Debug, PartialEq)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

fn element(node: roxmltree::Node<'_, '_>) -> Element {
    let mut attributes: Vec<(String, String)> = node
        .attributes()
        .map(|a| (a.name().to_owned(), a.value().to_owned()))
        .collect();
    attributes.sort();
    Element {
        name: node.tag_name().name().to_owned(),
        attributes,
        text: node.text().unwrap_or_default().to_owned(),
        children: node
            .children()
            .filter(roxmltree::Node::is_element)
            .map(element)
            .collect(),
    }
}

fn parse(xml: &str) -> Element {
    element(roxmltree::Document::parse(xml).unwrap().root_element())
}

fn vectors() -> Vectors {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/twiml_vectors.json");
    let vectors: Vectors = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        vectors.cases.len(),
        vectors.count,
        "vector file is complete"
    );
    assert!(vectors.count >= 54);
    vectors
}

#[test]
fn every_twiml_case_matches_the_official_library_as_a_tree() {
    let vectors = vectors();
    let mut differences = Vec::new();
    for case in &vectors.cases {
        let ours = build(&case.tree).to_xml();
        if parse(&ours) != parse(&case.xml) {
            differences.push(format!(
                "{} {}:\n  ours:     {ours}\n  official: {}",
                case.id, case.description, case.xml
            ));
        }
        assert!(ours.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        vectors.count,
        differences.join("\n")
    );
    println!("twiml conformance: {} cases equal as trees", vectors.count);
}

#[test]
fn every_official_document_passes_the_schema_check() {
    for case in vectors().cases {
        twiml::check(&case.xml).unwrap_or_else(|e| panic!("{}: {e}", case.id));
    }
}

#[test]
fn the_schema_check_refuses_what_twilio_would() {
    let refused = [
        ("<Response><Say>hi</Say>", "not well-formed"),
        ("<Gather/>", "root"),
        (
            "<Response><Dial><Say>x</Say></Dial></Response>",
            "not allowed inside <Dial>",
        ),
        (
            "<Response><Gather><Dial>1</Dial></Gather></Response>",
            "not allowed inside <Gather>",
        ),
        (
            "<Response><Number>+1</Number></Response>",
            "not allowed inside <Response>",
        ),
        (
            "<Response><Say voise=\"alice\">x</Say></Response>",
            "no attribute voise",
        ),
        ("<Response><Hangup>now</Hangup></Response>", "takes no text"),
        ("<Response><Redirect/></Response>", "lacks its content"),
        ("<Response><Dial/></Response>", "lacks its content"),
        (
            "<Response><Blink/></Response>",
            "not allowed inside <Response>",
        ),
    ];
    for (xml, why) in refused {
        let err = twiml::check(xml).expect_err(xml);
        assert!(err.contains(why), "{xml}: {err}");
    }
}
