//! The real function binaries, served by cargo-lambda.
//!
//! `cargo lambda watch --only-lambda-apis` emulates Lambda's control plane: function URLs at
//! `/lambda-url/<function>/…`, the Invoke API at `/2015-03-31/functions/<function>/invocations`
//! and the Runtime API at `/.rt/<function>/…`. The binaries `cargo build` made are started
//! here against that Runtime API, so `cargo test` never has to run cargo while it holds the
//! build lock, and each function gets only its own environment, as on AWS. Everything
//! reaches cargo-lambda through [`lambda_apis`](crate::lambda_apis), which starts another
//! instance of a function whenever its requests in flight outnumber its instances, up to the
//! function's concurrency, as Lambda adds execution environments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lambda_apis::{LambdaApis, Scaler};
use crate::process::{ManagedProcess, free_port, wait_for_port};
use crate::workspace::Workspace;

/// Concurrent executions a Region allows an account by default, the pool every function
/// without reserved concurrency draws from ("Lambda quotas", Lambda Developer Guide).
pub const ACCOUNT_CONCURRENCY: usize = 1_000;

/// One function to run: its binary name (also its Lambda name) and environment.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub env: Vec<(String, String)>,
    /// Instances started with the host, before any request (more start on demand).
    pub instances: usize,
    /// The most instances that may run at once: its reserved concurrency, an SQS mapping's
    /// MaximumConcurrency, else [`ACCOUNT_CONCURRENCY`].
    pub concurrency: usize,
    /// The function's timeout: each invocation's deadline is its start plus this.
    pub timeout: Duration,
    /// `MemorySize`, which Lambda tells the function in `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: i32,
}

pub struct FunctionHost {
    /// The port of the Lambda APIs (function URLs, Invoke, Runtime).
    pub port: u16,
    instances: Arc<Instances>,
    /// In front of cargo-lambda: each invocation's deadline as Lambda sets it, its billed
    /// duration, and the requests in flight that instances are started for.
    apis: LambdaApis,
    watch: ManagedProcess,
}

/// The running instances of every function, and what starting one more takes.
struct Instances {
    workspace: Workspace,
    log_dir: PathBuf,
    specs: Vec<FunctionSpec>,
    /// Release builds (`make bench`) instead of debug ones.
    release: bool,
    /// What each function's `AWS_LAMBDA_RUNTIME_API` is, by name.
    runtime_apis: Vec<(String, String)>,
    /// Each running instance: (function, instance number, process). Behind a lock so that
    /// requests can start instances and a chaos run can kill them while the stack is in use.
    running: Mutex<Vec<(String, usize, ManagedProcess)>>,
}

fn binary(workspace: &Workspace, name: &str, release: bool) -> PathBuf {
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
        let watch_port = free_port()?;
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
            .arg(watch_port.to_string())
            .current_dir(&workspace.root);
        let mut watch =
            ManagedProcess::spawn("cargo-lambda", command, &log_dir.join("cargo-lambda.log"))?;
        wait_for_port(watch_port, &mut watch, Duration::from_secs(30)).await?;
        let apis = LambdaApis::start(
            &format!("http://127.0.0.1:{watch_port}"),
            specs
                .iter()
                .map(|s| (s.name.to_owned(), s.timeout))
                .collect(),
            port,
        )
        .await?;
        let instances = Arc::new(Instances {
            workspace: workspace.clone(),
            log_dir: log_dir.to_owned(),
            runtime_apis: specs
                .iter()
                .map(|s| (s.name.clone(), apis.runtime_api(&s.name)))
                .collect(),
            specs,
            release,
            running: Mutex::default(),
        });
        for spec in &instances.specs {
            for _ in 0..spec.instances.max(1) {
                instances.start_one(spec, spec.instances.max(1))?;
            }
        }
        apis.scale_with(instances.clone());
        Ok(Self {
            port: apis.port,
            instances,
            apis,
            watch,
        })
    }

    /// Instances of `name` that run now.
    pub fn instances(&self, name: &str) -> usize {
        self.instances.running_of(name)
    }

    /// `name`'s timeout (each invocation's deadline).
    pub fn timeout(&self, name: &str) -> Option<Duration> {
        self.instances.spec(name).map(|s| s.timeout)
    }

    /// Kills instance `instance` of `name` with SIGKILL, whatever it is doing (a crash, an
    /// out-of-memory kill), and starts a fresh one in its place, as Lambda would.
    pub fn kill_and_restart(&self, name: &str, instance: usize) -> anyhow::Result<()> {
        let spec = self
            .instances
            .spec(name)
            .ok_or_else(|| anyhow::anyhow!("no function {name}"))?;
        let mut running = self.instances.running();
        let slot = running
            .iter_mut()
            .find(|(n, i, _)| *n == name && *i == instance)
            .ok_or_else(|| anyhow::anyhow!("{name} has no instance {instance}"))?;
        slot.2.kill();
        slot.2 = self.instances.spawn(spec, instance)?;
        Ok(())
    }

    /// The functions and their environments.
    pub fn specs(&self) -> &[FunctionSpec] {
        &self.instances.specs
    }

    /// How long each function's invocations took since the last call, as Lambda bills
    /// them (see `lambda_apis`).
    pub fn take_durations(&self) -> std::collections::HashMap<String, Vec<Duration>> {
        self.apis.take_durations()
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
        for (_, _, function) in self.instances.running().iter_mut() {
            function.stop();
        }
        self.watch.stop();
    }
}

impl Instances {
    fn running(&self) -> std::sync::MutexGuard<'_, Vec<(String, usize, ManagedProcess)>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spec(&self, name: &str) -> Option<&FunctionSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    fn running_of(&self, name: &str) -> usize {
        self.running().iter().filter(|(n, _, _)| n == name).count()
    }

    /// Starts the next instance of `spec` when fewer than `wanted` run (and its concurrency
    /// allows), deciding and starting under one lock so racing requests never overshoot.
    fn start_one(&self, spec: &FunctionSpec, wanted: usize) -> anyhow::Result<()> {
        let mut running = self.running();
        let instance = running.iter().filter(|(n, _, _)| *n == spec.name).count();
        if instance >= wanted.min(spec.concurrency.max(1)) {
            return Ok(());
        }
        let process = self.spawn(spec, instance)?;
        running.push((spec.name.clone(), instance, process));
        Ok(())
    }

    fn spawn(&self, spec: &FunctionSpec, instance: usize) -> anyhow::Result<ManagedProcess> {
        let runtime_api = self
            .runtime_apis
            .iter()
            .find(|(name, _)| *name == spec.name)
            .map(|(_, api)| api.as_str())
            .unwrap_or_default();
        let command = lambda_command(
            &binary(&self.workspace, &spec.name, self.release),
            runtime_api,
            spec,
        );
        let log = self.log_dir.join(format!("{}-{instance}.log", spec.name));
        ManagedProcess::spawn(&spec.name, command, &log)
    }
}

impl Scaler for Instances {
    /// One more instance when the requests in flight outnumber them, never past the
    /// function's concurrency (a request past it waits for an instance, as Lambda throttles).
    fn scale_to(&self, function: &str, in_flight: usize) {
        let Some(spec) = self.spec(function) else {
            return;
        };
        if let Err(e) = self.start_one(spec, in_flight) {
            tracing::warn!(function, error = %e, "could not start another instance");
        }
    }
}
