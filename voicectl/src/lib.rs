//! voicectl: the operator's tool. Each command is a module here over the `voicehooks` library;
//! the binary's `cli` defines the command line and its `commands` print what these return.
//!
//! - [`dlq`]: dead-letter queues: stats, peek, redrive.
//! - [`replay`]: send event files again; re-apply a call's stored events.
//! - [`timeline`]: one call's story (`voicectl call`).
//! - [`signing`]: `sign` and `verify`.
//! - [`smoke`]: one synthetic call through a stack.
//! - [`connect`]: a stack found by name, with the clients to reach it.
//! - [`numbers`]: phone numbers and TwiML Apps wired to the stack, drift found and fixed.
//! - [`simulate`]: the Twilio stand-in; [`media_server`] serves its recordings and, with
//!   [`twilio_api`], its numbers and Apps.

pub mod connect;
pub mod dlq;
pub mod media_server;
pub mod numbers;
pub mod replay;
pub mod signing;
pub mod simulate;
pub mod smoke;
pub mod timeline;
pub mod twilio_api;

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar on stderr, drawn only for a person: a terminal, and not `--json`.
pub fn progress_bar(len: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}
