//! `voicectl call`: one call's story.

use std::process::ExitCode;

use voicectl::connect::Stack;
use voicectl::timeline::{self, CallView};

use super::{Output, Report, exit, json_of};

pub async fn run(stack: &Stack, call_sid: &str, out: &Output) -> anyhow::Result<ExitCode> {
    let view = timeline::load(stack, call_sid).await?;
    out.print(&view)?;
    Ok(exit(view.call.is_some() || !view.recordings.is_empty()))
}

impl Report for CallView {
    fn json(&self) -> serde_json::Result<String> {
        json_of(self)
    }

    fn text(&self) -> String {
        timeline::render(self)
    }
}
