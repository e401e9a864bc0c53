//! Transcribe's output document, read into what the recording's item keeps.

use serde::Deserialize;

use crate::recording::TranscriptOutcome;

/// Which party each channel of a Twilio dual-channel recording is: the first channel is the
/// call's own leg (the caller), the second the dialled party (the agent).
pub const CHANNEL_ROLES: [&str; 2] = ["caller", "agent"];

/// Reads Transcribe's output document: the whole transcript and, with channel
/// identification, each channel's words by role.
/// <https://docs.aws.amazon.com/transcribe/latest/dg/how-channel-id.html>
pub fn read_transcript(document: &[u8]) -> Result<TranscriptOutcome, serde_json::Error> {
    #[derive(Deserialize)]
    struct Document {
        results: Results,
    }
    #[derive(Deserialize)]
    struct Results {
        transcripts: Vec<Text>,
        #[serde(default)]
        channel_labels: Option<ChannelLabels>,
    }
    #[derive(Deserialize)]
    struct Text {
        transcript: String,
    }
    #[derive(Deserialize)]
    struct ChannelLabels {
        channels: Vec<Channel>,
    }
    #[derive(Deserialize)]
    struct Channel {
        channel_label: String,
        items: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(rename = "type")]
        kind: String,
        alternatives: Vec<Alternative>,
    }
    #[derive(Deserialize)]
    struct Alternative {
        content: String,
    }
    let document: Document = serde_json::from_slice(document)?;
    let text = document
        .results
        .transcripts
        .iter()
        .map(|t| t.transcript.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let channels = document
        .results
        .channel_labels
        .map(|labels| labels.channels)
        .unwrap_or_default()
        .into_iter()
        .map(|channel| {
            let role = channel
                .channel_label
                .strip_prefix("ch_")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| CHANNEL_ROLES.get(i))
                .map_or(channel.channel_label.clone(), |r| (*r).to_owned());
            let mut words = String::new();
            for item in &channel.items {
                let Some(word) = item.alternatives.first() else {
                    continue;
                };
                // Punctuation sticks to the word before it.
                if !words.is_empty() && item.kind != "punctuation" {
                    words.push(' ');
                }
                words.push_str(&word.content);
            }
            (role, words)
        })
        .collect();
    Ok(TranscriptOutcome::Completed { text, channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_told_apart_by_role() {
        let document = br#"{"jobName":"RE1","accountId":"1","status":"COMPLETED","results":{
            "transcripts":[{"transcript":"Hello, thanks for calling. Hi there."}],
            "channel_labels":{"number_of_channels":2,"channels":[
              {"channel_label":"ch_0","items":[
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"Hi"}]},
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"there"}]},
                {"type":"punctuation","alternatives":[{"confidence":"0.0","content":"."}]}]},
              {"channel_label":"ch_1","items":[
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"Hello"}]},
                {"type":"punctuation","alternatives":[{"confidence":"0.0","content":","}]},
                {"type":"pronunciation","alternatives":[{"confidence":"0.9","content":"thanks"}]}]}]},
            "items":[]}}"#;
        let TranscriptOutcome::Completed { text, channels } = read_transcript(document).unwrap()
        else {
            panic!("a completed document")
        };
        assert_eq!(text, "Hello, thanks for calling. Hi there.");
        assert_eq!(
            channels,
            [
                ("caller".to_owned(), "Hi there.".to_owned()),
                ("agent".to_owned(), "Hello, thanks".to_owned())
            ]
        );
        assert!(read_transcript(b"{}").is_err());
    }
}
