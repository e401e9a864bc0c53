//! The local AWS emulator: moto's server on a free loopback port (DynamoDB writes
//! to one item serialised, as `devstack/moto_server.py` explains). The project's own SDK
//! clients talk to it unchanged, through `AWS_ENDPOINT_URL`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::process::{ManagedProcess, free_port, wait_for_port};
use crate::workspace::Workspace;

/// The region and account the local stack pretends to be in (moto's default account).
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

pub struct Emulator {
    pub endpoint: String,
    /// The account's administrator (an IAM user allowed everything), made before IAM is
    /// enforced: what devstack itself deploys, inspects and plays AWS's own part with.
    pub admin: Credentials,
    process: ManagedProcess,
}

impl Emulator {
    /// Starts moto on a free port, ready when the server there says it is the one started
    /// (`GET /__devstack/id`, see devstack/moto_server.py). A free port can be taken by a
    /// parallel test between the probe and moto's bind, and another test's probe listener
    /// can answer a connect for a moment: a start that never answers as ours is retried on a
    /// fresh port, and nothing is ever reset on a server that is not ours.
    pub async fn start(workspace: &Workspace, log_dir: &Path) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(workspace, log_dir).await {
                Ok(emulator) => return Ok(emulator),
                Err(e) if attempt < 3 => {
                    eprintln!("moto did not start (attempt {attempt}): {e:#}; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(workspace: &Workspace, log_dir: &Path) -> anyhow::Result<Self> {
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
        let id = format!("{}-{port}-{}", std::process::id(), log_dir.display());
        let mut command = Command::new(&python);
        command
            .arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("DEVSTACK_EMULATOR_ID", &id);
        let mut process = ManagedProcess::spawn("moto_server", command, &log_dir.join("moto.log"))?;
        wait_for_port(port, &mut process, Duration::from_secs(30)).await?;
        let mut emulator = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            admin: Credentials::new("test", "test", None, None, "devstack"),
            process,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !emulator.answers_as(&id).await {
            anyhow::ensure!(
                emulator.process.is_running() && std::time::Instant::now() < deadline,
                "the server on port {port} is not the moto started here; see its log"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        emulator
            .reset()
            .await
            .map_err(|e| e.context("moto did not answer its reset API"))?;
        emulator.admin = emulator.create_admin().await?;
        Ok(emulator)
    }

    /// An IAM user with every action on every resource, and its access key.
    async fn create_admin(&self) -> anyhow::Result<Credentials> {
        let iam = aws_sdk_iam::Client::new(&self.sdk_config().await);
        let user = "devstack-admin";
        iam.create_user().user_name(user).send().await?;
        iam.put_user_policy()
            .user_name(user)
            .policy_name("administrator")
            .policy_document(
                serde_json::json!({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
            )
            .send()
            .await?;
        access_key(&iam, user).await
    }

    /// From now on every request must be signed by a known identity whose policies allow it
    /// (moto's `/moto-api/reset-auth`: no request left unauthenticated).
    pub async fn enforce_iam(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body("0")
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn answers_as(&self, id: &str) -> bool {
        let answer = reqwest::Client::new()
            .get(format!("{}/__devstack/id", self.endpoint))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match answer {
            Ok(response) => response.text().await.is_ok_and(|text| text == id),
            Err(_) => false,
        }
    }

    /// SDK config for clients of the emulator.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(voicehooks::aws::http_client())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(self.admin.clone())
            .load()
            .await
    }

    /// The environment an SDK user needs to reach the emulator as `credentials`.
    pub fn env_as(&self, credentials: &Credentials) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id()),
            ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(token) = credentials.session_token() {
            env.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
        }
        env
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

/// A new access key of IAM user `user`.
pub async fn access_key(iam: &aws_sdk_iam::Client, user: &str) -> anyhow::Result<Credentials> {
    let key = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await?
        .access_key
        .ok_or_else(|| anyhow::anyhow!("no access key for {user}"))?;
    Ok(Credentials::new(
        key.access_key_id(),
        key.secret_access_key(),
        None,
        None,
        "devstack",
    ))
}
