//! The local AWS emulator: moto's server on a free loopback port (DynamoDB writes
//! to one item serialised, as `devstack/moto_server.py` explains). The project's own SDK
//! clients talk to it unchanged, through `AWS_ENDPOINT_URL`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::process::{ManagedProcess, free_port, wait_for_port};
use crate::workspace::Workspace;

/// The region and account the local stack pretends to be in (moto's default account).
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

pub struct Emulator {
    pub endpoint: String,
    process: ManagedProcess,
}

impl Emulator {
    pub async fn start(workspace: &Workspace, log_dir: &Path) -> anyhow::Result<Self> {
        // moto's server through a wrapper that serialises writes to one DynamoDB item, as the
        // real service does (see devstack/moto_server.py).
        let python = workspace.stack_tools().join("python");
        anyhow::ensure!(
            python.exists(),
            "{} is missing: run `make venv` (make test and make demo do it)",
            python.display()
        );
        let launcher = workspace.root.join("devstack/moto_server.py");
        let port = free_port()?;
        let mut command = Command::new(&python);
        command
            .arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut process = ManagedProcess::spawn("moto_server", command, &log_dir.join("moto.log"))?;
        wait_for_port(port, &mut process, Duration::from_secs(30)).await?;
        let emulator = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            process,
        };
        emulator
            .reset()
            .await
            .context("moto did not answer its reset API")?;
        Ok(emulator)
    }

    /// SDK config for clients of the emulator.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "devstack"))
            .load()
            .await
    }

    /// The environment a function (or any SDK user) needs to reach the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Forgets every resource (moto's `POST /moto-api/reset`).
    pub async fn reset(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}
