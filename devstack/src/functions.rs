//! The real function binaries, served by cargo-lambda.
//!
//! `cargo lambda watch --only-lambda-apis` emulates Lambda's control plane: function URLs at
//! `/lambda-url/<function>/…`, the Invoke API at `/2015-03-31/functions/<function>/invocations`
//! and the Runtime API at `/.rt/<function>/…`. The binaries `cargo build` made are started
//! here against that Runtime API, so `cargo test` never has to run cargo while it holds the
//! build lock, and each function gets only its own environment, as on AWS.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{ManagedProcess, free_port, wait_for_port};
use crate::runtime_deadline::RuntimeProxy;
use crate::workspace::Workspace;

/// One function to run: its binary name (also its Lambda name) and environment.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub env: Vec<(String, String)>,
    /// Processes polling the function's Runtime API, like concurrent Lambda instances.
    pub instances: usize,
    /// The function's timeout: each invocation's deadline is its start plus this.
    pub timeout: Duration,
    /// `MemorySize`, which Lambda tells the function in `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: i32,
}

pub struct FunctionHost {
    pub port: u16,
    workspace: Workspace,
    log_dir: std::path::PathBuf,
    specs: Vec<FunctionSpec>,
    /// Each running instance: (function, instance number, process). Behind a lock so that a
    /// chaos run can kill and restart instances while the stack is in use.
    functions: Mutex<Vec<(String, usize, ManagedProcess)>>,
    /// Between the functions and cargo-lambda's Runtime API, setting each invocation's
    /// deadline as Lambda does.
    runtime: RuntimeProxy,
    watch: ManagedProcess,
    /// Release builds (`make bench`) instead of debug ones.
    release: bool,
}

fn binary(workspace: &Workspace, name: &str, release: bool) -> std::path::PathBuf {
    if release {
        workspace.release_binary(name)
    } else {
        workspace.function_binary(name)
    }
}

/// A function `binary` as Lambda starts it: polling the Runtime API at `runtime_api`, with
/// only what Lambda would give it plus its own configuration.
pub fn lambda_command(binary: &Path, runtime_api: &str, spec: &FunctionSpec) -> Command {
    let mut command = Command::new(binary);
    command.env_clear();
    for name in ["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        )
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    command
}

impl FunctionHost {
    /// Serves the Lambda APIs on `port` (a free one when `None`) and starts the functions.
    pub async fn start(
        workspace: &Workspace,
        log_dir: &Path,
        port: Option<u16>,
        specs: Vec<FunctionSpec>,
        release: bool,
    ) -> anyhow::Result<Self> {
        for spec in &specs {
            let binary = binary(workspace, &spec.name, release);
            anyhow::ensure!(
                binary.exists(),
                "{} is missing: build the functions first (`make build-local`, or `cargo build --release` for release)",
                binary.display()
            );
        }
        let cargo_lambda = workspace.stack_tools().join("cargo-lambda");
        anyhow::ensure!(
            cargo_lambda.exists(),
            "{} is missing: run `make venv`",
            cargo_lambda.display()
        );
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut command = Command::new(cargo_lambda);
        command
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(port.to_string())
            .current_dir(&workspace.root);
        let mut watch =
            ManagedProcess::spawn("cargo-lambda", command, &log_dir.join("cargo-lambda.log"))?;
        wait_for_port(port, &mut watch, Duration::from_secs(30)).await?;
        let runtime = RuntimeProxy::start(
            &format!("http://127.0.0.1:{port}"),
            specs
                .iter()
                .map(|s| (s.name.to_owned(), s.timeout))
                .collect(),
        )
        .await?;

        let host = Self {
            port,
            workspace: workspace.clone(),
            log_dir: log_dir.to_owned(),
            specs,
            release,
            functions: Mutex::default(),
            runtime,
            watch,
        };
        for spec in &host.specs {
            for instance in 0..spec.instances.max(1) {
                let process = host.spawn_function(spec, instance)?;
                host.running().push((spec.name.clone(), instance, process));
            }
        }
        Ok(host)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Vec<(String, usize, ManagedProcess)>> {
        self.functions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Instances of `name` that run.
    pub fn instances(&self, name: &str) -> usize {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.instances.max(1))
    }

    /// `name`'s timeout (each invocation's deadline).
    pub fn timeout(&self, name: &str) -> Option<Duration> {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.timeout)
    }

    /// Kills instance `instance` of `name` with SIGKILL, whatever it is doing (a crash, an
    /// out-of-memory kill), and starts a fresh one in its place, as Lambda would.
    pub fn kill_and_restart(&self, name: &str, instance: usize) -> anyhow::Result<()> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("no function {name}"))?;
        let mut running = self.running();
        let slot = running
            .iter_mut()
            .find(|(n, i, _)| *n == name && *i == instance)
            .ok_or_else(|| anyhow::anyhow!("{name} has no instance {instance}"))?;
        slot.2.kill();
        slot.2 = self.spawn_function(spec, instance)?;
        Ok(())
    }

    fn spawn_function(
        &self,
        spec: &FunctionSpec,
        instance: usize,
    ) -> anyhow::Result<ManagedProcess> {
        let command = lambda_command(
            &binary(&self.workspace, &spec.name, self.release),
            &self.runtime.runtime_api(&spec.name),
            spec,
        );
        let log = self.log_dir.join(format!("{}-{instance}.log", spec.name));
        ManagedProcess::spawn(&spec.name, command, &log)
    }

    /// The functions and their environments.
    pub fn specs(&self) -> &[FunctionSpec] {
        &self.specs
    }

    /// How long each function's invocations took since the last call, as Lambda bills
    /// them (see `runtime_deadline`).
    pub fn take_durations(&self) -> std::collections::HashMap<String, Vec<Duration>> {
        self.runtime.take_durations()
    }

    /// The base of the Lambda APIs (what `AWS_ENDPOINT_URL_LAMBDA` would be).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A function's URL; append the route, e.g. `/twilio/status`.
    pub fn function_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/{name}", self.port)
    }

    /// Stops every function and the control plane.
    pub fn stop(&mut self) {
        for (_, _, function) in self.running().iter_mut() {
            function.stop();
        }
        self.watch.stop();
    }
}
