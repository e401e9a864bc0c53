//! `voicectl flows`: the call flows checked, and the TwiML a step of a call gets, before a
//! deploy. Both print for people only: a flows file's problems, a TwiML document.

use std::path::Path;
use std::process::ExitCode;

use voicehooks::config::local;
use voicehooks::flows::{self, Flows, Step, Urls};
use voicehooks::twilio::Params;

use crate::cli::{StepKind, TwimlArgs};

/// `flows check`: every problem with its line, or how many flows are valid.
pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    Ok(match load(file)? {
        Ok(flows) => {
            println!("{}: {} flows, valid", file.display(), flows.names().count());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    })
}

/// `flows twiml`: the document one step of a call gets.
pub fn twiml(args: &TwimlArgs) -> anyhow::Result<ExitCode> {
    let flows = match load(&args.file)? {
        Ok(flows) => flows,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let named = || {
        args.flow
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--flow is needed for this step"))
    };
    let step = match args.step {
        StepKind::Enter => Step::Enter {
            flow: args.flow.clone(),
        },
        StepKind::Menu => Step::Menu {
            flow: named()?,
            no_input: args.no_input,
            invalid: args.invalid,
        },
        StepKind::Dial => Step::DialDone { flow: named()? },
        StepKind::Recorded => Step::Recorded { flow: named()? },
    };
    let rendered = flows.render(&step, &caller_params(args), &Urls::new(&args.base_url));
    eprintln!("flow: {}  outcome: {}", rendered.flow, rendered.outcome);
    if let Some(problem) = &rendered.problem {
        eprintln!("problem: {problem}");
    }
    println!("{}", rendered.twiml.to_pretty_xml());
    Ok(ExitCode::SUCCESS)
}

/// The params Twilio would send for the step: the call, and what the caller pressed or said.
fn caller_params(args: &TwimlArgs) -> Params {
    let mut params = vec![
        ("CallSid", "CA00000000000000000000000000000000".to_owned()),
        ("AccountSid", local::ACCOUNT_SID.to_owned()),
        ("From", args.from.clone()),
        ("To", args.to.clone()),
        ("DialCallStatus", args.dial_status.clone()),
    ];
    params.extend(args.digits.clone().map(|d| ("Digits", d)));
    params.extend(args.speech.clone().map(|s| ("SpeechResult", s)));
    params.into_iter().collect()
}

fn load(file: &Path) -> anyhow::Result<Result<Flows, flows::FlowsError>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(Flows::parse(&text, &file.display().to_string()))
}
