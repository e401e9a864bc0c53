//! Writing TwiML with quick-xml: each element's attributes in Twilio's order, only those
//! set; text escaped and stripped of what XML cannot carry.

use std::borrow::Cow;

use serde::Serialize;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::{
    Conference, Dial, DialNoun, Enqueue, Gather, Pause, Play, Prompt, Record, Say, Verb,
    VoiceResponse, attributes,
};

/// A start tag under construction: set attributes only.
struct Tag {
    name: &'static str,
    start: BytesStart<'static>,
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
        }
    }

    /// The element's attributes that are set, in its struct's order ([`attributes`]).
    fn attributes(mut self, element: &impl Serialize) -> Self {
        attributes::for_each(element, |name, value| {
            if let Some(value) = value {
                self.start.push_attribute((name, xml_chars(value).as_ref()));
            }
        });
        self
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
            Self::Redirect(v) => leaf(xml, Tag::new("Redirect").attributes(v), &v.url),
            Self::Hangup => emit(xml, Event::Empty(BytesStart::new("Hangup"))),
            Self::Reject(v) => leaf(xml, Tag::new("Reject").attributes(v), ""),
            Self::Enqueue(v) => v.write(xml),
            Self::Leave => emit(xml, Event::Empty(BytesStart::new("Leave"))),
        }
    }
}

impl Say {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Say").attributes(self);
        leaf(xml, tag, &self.text);
    }
}

impl Play {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Play").attributes(self);
        leaf(xml, tag, &self.url);
    }
}

impl Pause {
    fn write(&self, xml: &mut Xml) {
        leaf(xml, Tag::new("Pause").attributes(self), "");
    }
}

impl Gather {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Gather").attributes(self);
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
        let tag = Tag::new("Dial").attributes(self);
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
                let tag = Tag::new("Number").attributes(n);
                leaf(xml, tag, &n.number);
            }
            Self::Client(c) => {
                let tag = Tag::new("Client").attributes(c);
                leaf(xml, tag, &c.identity);
            }
            Self::Sip(s) => {
                let tag = Tag::new("Sip").attributes(s);
                leaf(xml, tag, &s.uri);
            }
            Self::Conference(c) => c.write(xml),
            Self::Queue(q) => {
                let tag = Tag::new("Queue").attributes(q);
                leaf(xml, tag, &q.name);
            }
        }
    }
}

impl Conference {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Conference").attributes(self);
        leaf(xml, tag, &self.name);
    }
}

impl Record {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Record").attributes(self);
        leaf(xml, tag, "");
    }
}

impl Enqueue {
    fn write(&self, xml: &mut Xml) {
        let tag = Tag::new("Enqueue").attributes(self);
        leaf(xml, tag, &self.name);
    }
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
