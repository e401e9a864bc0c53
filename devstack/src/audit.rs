//! The security check on what a run logged: every function's captured output is read for
//! the stack's secrets (the auth token, the API key's secret) and for phone numbers that were not masked (`+14155550234` must appear
//! as `+1415****234`, see `voicehooks::telemetry::mask_phone`).

use std::path::Path;

use voicehooks::config::local;

/// The local stack's secrets: what no log line may hold.
pub const LOCAL_SECRETS: &[&str] = &[local::AUTH_TOKEN, local::API_KEY_SECRET];

/// What the logs of a run held.
#[derive(Debug, Default)]
pub struct LogAudit {
    pub files: usize,
    pub lines: usize,
    /// Lines that carry a secret (any part of one 16 characters long or more).
    pub token_lines: Vec<String>,
    /// Lines with a phone number in full.
    pub unmasked_lines: Vec<String>,
    /// Requests the emulator's IAM refused (its `IAM-DENIED` lines, devstack/moto_server.py):
    /// a policy that lacks an action a function or voicectl needs.
    pub iam_denials: Vec<String>,
}

impl LogAudit {
    pub fn is_clean(&self) -> bool {
        self.token_lines.is_empty() && self.unmasked_lines.is_empty() && self.iam_denials.is_empty()
    }

    /// What was read and found, for a run's figures.
    pub fn summary(&self) -> String {
        format!(
            "{} lines in {} files: {} with a secret (auth token, API key secret), {} with an unmasked phone number; {} AWS requests refused by IAM",
            self.lines,
            self.files,
            self.token_lines.len(),
            self.unmasked_lines.len(),
            self.iam_denials.len()
        )
    }

    /// One line per finding, for a run's mismatches.
    pub fn findings(&self) -> Vec<String> {
        let token = self
            .token_lines
            .iter()
            .map(|l| format!("log line carries a secret: {}", redact(l)));
        let numbers = self
            .unmasked_lines
            .iter()
            .map(|l| format!("log line carries an unmasked phone number: {l}"));
        let denials = self
            .iam_denials
            .iter()
            .map(|l| format!("IAM refused a request: {l}"));
        token.chain(numbers).chain(denials).collect()
    }
}

/// Reads every `*.log` file of `dir` but the emulator's own (moto logs request lines, not
/// our code) for `secrets` and unmasked phone numbers, and the emulator's for what IAM refused.
pub fn audit_logs(dir: &Path, secrets: &[&str]) -> anyhow::Result<LogAudit> {
    let mut audit = LogAudit::default();
    // A fragment of a secret is as bad as the whole: a log that truncates still leaks.
    let fragments: Vec<&str> = secrets
        .iter()
        .flat_map(|secret| {
            (0..secret.len().saturating_sub(15)).filter_map(|i| secret.get(i..i + 16))
        })
        .collect();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("moto") && name.ends_with(".log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
            audit.iam_denials.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("IAM-DENIED "))
                    .map(str::to_owned),
            );
            continue;
        }
        if !name.ends_with(".log") {
            continue;
        }
        audit.files += 1;
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        for line in text.lines() {
            audit.lines += 1;
            if fragments.iter().any(|f| line.contains(f)) {
                audit.token_lines.push(format!("{name}: {line}"));
            }
            if has_unmasked_number(line) {
                audit.unmasked_lines.push(format!("{name}: {line}"));
            }
        }
    }
    Ok(audit)
}

/// A `+` (or its URL encoding `%2B`) followed by 8 or more digits: an E.164 number in full.
pub fn has_unmasked_number(line: &str) -> bool {
    let digits_after = |rest: &str| rest.bytes().take_while(u8::is_ascii_digit).count();
    line.match_indices('+')
        .map(|(i, _)| i + 1)
        .chain(
            line.match_indices("%2B")
                .chain(line.match_indices("%2b"))
                .map(|(i, _)| i + 3),
        )
        .any(|start| digits_after(&line[start..]) >= 8)
}

/// A finding is printed without the secret it found.
fn redact(line: &str) -> String {
    format!(
        "{}… ({} characters)",
        &line[..line.len().min(40)],
        line.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_full_are_found_and_masked_ones_are_not() {
        assert!(has_unmasked_number(r#"{"from":"+14155550234"}"#));
        assert!(has_unmasked_number("From=%2B14155550234&To=x"));
        assert!(!has_unmasked_number(r#"{"from":"+1415****234"}"#));
        assert!(!has_unmasked_number(
            r#"{"from":"client:agent-3","seq":1795000000}"#
        ));
        assert!(!has_unmasked_number("+123 and +4567"));
    }

    #[test]
    fn the_token_and_its_fragments_are_found() {
        let dir = std::env::temp_dir().join(format!("audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = "0123456789abcdef0123456789abcdef";
        std::fs::write(
            dir.join("webhook-status-0.log"),
            "clean line\nsecret=456789abcdef012345\n{\"from\":\"+1415****234\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("moto.log"),
            format!("{token}\nIAM-DENIED arn:aws:sts::1:assumed-role/r/s sqs:SendMessage on q: no statement allows it\n"),
        )
        .unwrap();
        let audit = audit_logs(&dir, &["another-secret-of-some-length", token]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((audit.files, audit.lines), (1, 3));
        assert_eq!(audit.token_lines.len(), 1);
        assert!(audit.unmasked_lines.is_empty());
        assert_eq!(audit.iam_denials.len(), 1);
        assert!(!audit.findings()[0].contains("456789abcdef0123"));
    }
}
