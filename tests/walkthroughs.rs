//! The docs hold together (fences, links), and the on-call walkthroughs of
//! `docs/OPERATIONS.md` run as written: each `$ make …` line of
//! their console blocks runs in the repository, on a local stack of this test's own (the
//! Makefile's `STACK_ENV_FILE`), and prints what the document shows, numbers, ids and times
//! aside.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::process::Command;
use std::time::{Duration, Instant};

use devstack::workspace::Workspace;
use devstack::{LocalStack, StackOptions};

/// The sections whose console blocks are run, in order.
const SECTIONS: [&str; 2] = [
    "## An incident, end to end",
    "## A webhook rejected with 403",
];

/// Where the walkthroughs are written.
const DOCUMENT: &str = "docs/OPERATIONS.md";

/// One `$ command` and the lines the document shows it print.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The console blocks of `section` (up to the next heading), as steps.
fn steps(document: &str, section: &str) -> Vec<Step> {
    let start = document
        .find(section)
        .unwrap_or_else(|| panic!("no {section:?}"));
    let body = &document[start + section.len()..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    for line in body.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_owned(),
                shown: Vec::new(),
            }),
            None => steps.last_mut().unwrap().shown.push(line.to_owned()),
        }
    }
    steps
}

/// A line with what changes from run to run made alike: digits, message ids, the padding
/// and rules that widen with them.
fn normalized(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('N');
        } else if c == ' ' || c == '─' || c == '═' {
            while chars.peek() == Some(&c) {
                chars.next();
            }
            out.push(c);
        } else {
            out.push(c);
        }
    }
    // Message ids: UUIDs, whose letters vary too.
    out.split(' ')
        .map(|word| {
            let parts: Vec<&str> = word.split('-').collect();
            let uuid = parts.len() == 5
                && parts
                    .iter()
                    .all(|p| p.chars().all(|c| c.is_ascii_hexdigit() || c == 'N'));
            if uuid { "UUID" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn depth_of_status_dlq(env_file: &std::path::Path) -> String {
    let output = Command::new("make")
        .args(["-s", "dlq"])
        .env("STACK_ENV_FILE", env_file)
        .current_dir(Workspace::locate().root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_on_call_walkthroughs_run_as_written() {
    let stack = LocalStack::start(StackOptions {
        label: "walkthroughs".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts");
    let root = Workspace::locate().root;
    let env_file = stack.log_dir.join("stack.env");
    std::fs::write(&env_file, stack.voicectl_env()).unwrap();
    let document = std::fs::read_to_string(root.join(DOCUMENT)).unwrap();
    let steps: Vec<Step> = SECTIONS.iter().flat_map(|s| steps(&document, s)).collect();
    assert!(steps.len() >= 10, "the walkthroughs have their commands");

    for step in &steps {
        assert!(
            step.command.starts_with("make "),
            "the walkthroughs' commands go through make: {}",
            step.command
        );
        // The reader waits for the worker to give up, and for the redrive to drain.
        if step.command == "make dlq" {
            let started = Instant::now();
            while !depth_of_status_dlq(&env_file)
                .contains("status-dlq                       4 waiting")
            {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "never dead-lettered"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if step.command.starts_with("make call") {
            stack
                .wait_until_drained(Duration::from_secs(60))
                .await
                .unwrap();
        }
        let output = tokio::task::spawn_blocking({
            let command = step.command.clone();
            let root = root.clone();
            let env_file = env_file.clone();
            move || {
                Command::new("bash")
                    .args(["-c", &command.replacen("make ", "make -s ", 1)])
                    .env("STACK_ENV_FILE", env_file)
                    .current_dir(root)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        // `verify` exits 1 when it finds a mismatch, as the documented case does.
        assert!(
            output.status.success() || step.command.starts_with("make verify"),
            "{}: {printed}{}",
            step.command,
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Vec<String> = printed.lines().map(normalized).collect();
        for shown in step
            .shown
            .iter()
            .filter(|l| !l.contains('…') || l.contains("sha256"))
        {
            assert!(
                printed.contains(&normalized(shown)),
                "{}: {DOCUMENT} shows\n{shown}\nbut it printed\n{}",
                step.command,
                printed.join("\n")
            );
        }
    }
    stack.stop().await;
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The README and docs/ read whole: every code fence closes, and every link inside the
/// repository names a file (and a heading) that exists. A split or a move that cuts a
/// block or strands a link fails here, not in a reader's browser.
#[test]
fn the_front_door_and_the_docs_are_whole() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut documents = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        documents.push(entry.unwrap().path());
    }
    let headings = |path: &std::path::Path| -> Vec<String> {
        let mut in_block = false;
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|line| {
                if line.starts_with("```") {
                    in_block = !in_block;
                }
                !in_block && line.starts_with('#')
            })
            .map(anchor)
            .collect()
    };
    let mut problems = Vec::new();
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        let name = document.strip_prefix(&root).unwrap().display().to_string();
        let fences = text.lines().filter(|l| l.starts_with("```")).count();
        if fences % 2 != 0 {
            problems.push(format!("{name}: {fences} code fences, one left open"));
        }
        for (_, rest) in text.match_indices("](").map(|(i, _)| text.split_at(i + 2)) {
            let Some(target) = rest.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, heading) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(file)
            };
            if !path.exists() {
                problems.push(format!("{name}: link to missing {target}"));
            } else if !heading.is_empty() && !headings(&path).iter().any(|h| h == heading) {
                problems.push(format!("{name}: link to missing heading {target}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(documents.len() >= 5, "the README and docs/ are read");
}
