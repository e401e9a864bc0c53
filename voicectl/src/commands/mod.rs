//! Each command carried out, one module a command. What a command prints goes through one
//! render path, [`Report`]: text for people, or JSON for scripts with `--json`.

pub mod call;
pub mod dlq;
pub mod flows;
pub mod numbers;
pub mod reconcile;
pub mod replay;
pub mod signatures;
pub mod simulate;
pub mod smoke;

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

/// What a command prints.
pub trait Report {
    /// For scripts (`--json`).
    fn json(&self) -> serde_json::Result<String>;
    /// For people: whole lines, each ending in a newline.
    fn text(&self) -> String;
}

/// The JSON a report prints: `value`, pretty.
pub fn json_of(value: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string_pretty(value)
}

/// Where reports go: stdout, as text or as JSON.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn print(&self, report: &impl Report) -> anyhow::Result<()> {
        if self.json {
            println!("{}", report.json()?);
        } else {
            print!("{}", report.text());
        }
        Ok(())
    }
}

/// Success, or the plain failure code.
pub fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An age in seconds, for people (`1h 2m 3s`).
pub fn age(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// Appends one line to a report's text (writing to a `String` cannot fail).
macro_rules! push_line {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use push_line;
