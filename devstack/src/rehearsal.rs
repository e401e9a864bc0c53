//! `make deploy-rehearsal`: `sam deploy` itself, run against the emulator instead of an
//! account. `sam build` has built the arm64 bootstraps (cargo-lambda, in `target/sam`);
//! here SAM CLI packages them (zips uploaded to the emulator's S3), creates its change set
//! with the `AWS::Serverless` transform (applied by the emulator wrapper, as CloudFormation
//! applies it), executes it and waits, exactly as it would against AWS; then the stack is
//! read back: every function made from the uploaded code, with the template's settings.
//!
//! What only a real account can show: the transform as AWS runs it (here the same library,
//! pinned), quotas and service limits, API Gateway (moto has no CloudFormation model for
//! ApiGatewayV2), KMS key policies, resource and trust policies, and the arm64 bootstraps
//! actually starting on Lambda.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::emulator::{ACCOUNT_ID, Emulator};
use crate::workspace::Workspace;

const STACK: &str = "voicehooks-rehearsal";

/// Runs `sam deploy` of `build_dir/template.yaml` against a fresh emulator and checks what
/// it made; the figures on stdout.
pub async fn rehearse(build_dir: &Path) -> anyhow::Result<()> {
    let workspace = Workspace::locate();
    let template = build_dir.join("template.yaml");
    anyhow::ensure!(
        template.exists(),
        "{} is missing: `make deploy-rehearsal` runs `sam build` first",
        template.display()
    );
    let log_dir = workspace.log_dir("deploy-rehearsal")?;
    let mut emulator = Emulator::start(&workspace, &log_dir).await?;
    let sdk = emulator.sdk_config().await;
    let bucket = format!("{STACK}-artifacts-{ACCOUNT_ID}");
    voicehooks::aws::s3_client(&sdk)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await?;

    let sam = workspace.root.join(".venv/sam/bin/sam");
    let started = std::time::Instant::now();
    let status = Command::new(&sam)
        .args(["deploy", "--template-file"])
        .arg(&template)
        .args(["--stack-name", STACK, "--s3-bucket", &bucket])
        .args(["--region", crate::emulator::REGION])
        .args([
            "--capabilities",
            "CAPABILITY_IAM",
            "CAPABILITY_NAMED_IAM",
            "CAPABILITY_AUTO_EXPAND",
        ])
        .args(["--no-confirm-changeset", "--no-progressbar"])
        .args([
            "--parameter-overrides",
            "PublicBaseUrl=https://voice.example.test",
        ])
        .envs(emulator.env_as(&emulator.admin))
        .env("SAM_CLI_TELEMETRY", "0")
        .status()
        .with_context(|| format!("{} (run `make venv`)", sam.display()))?;
    anyhow::ensure!(status.success(), "sam deploy failed against the emulator");
    let deployed = started.elapsed();

    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let stack = cloudformation
        .describe_stacks()
        .stack_name(STACK)
        .send()
        .await?
        .stacks()
        .first()
        .cloned()
        .context("no stack")?;
    println!(
        "\n  stack {STACK}: {:?} in {:.1} s (package, change set with the SAM transform, execute)",
        stack.stack_status(),
        deployed.as_secs_f64()
    );
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let functions = lambda.list_functions().send().await?;
    let mut total = 0i64;
    for f in functions.functions() {
        let name = f.function_name().unwrap_or_default();
        let code = lambda.get_function().function_name(name).send().await?;
        let size = code.configuration().map_or(0, |c| c.code_size());
        anyhow::ensure!(size > 0, "{name} was made with no code");
        total += size;
        println!(
            "  {name:<40} {:>7.1} KiB of code  timeout {:>3} s  memory {} MB",
            size as f64 / 1024.0,
            f.timeout().unwrap_or_default(),
            f.memory_size().unwrap_or_default()
        );
    }
    println!(
        "  {} functions, {:.1} MiB of zipped bootstraps uploaded by sam",
        functions.functions().len(),
        total as f64 / 1_048_576.0
    );
    emulator.stop();
    Ok(())
}
