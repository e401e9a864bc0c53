//! Child processes that are always stopped: each runs in its own process group, so stopping
//! it also stops whatever it started, and a guard stops it on drop (including when a test
//! panics).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process group at once (SIGKILL): a crash, as far as anyone can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = Pid::from_raw(child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // The leader is gone; make sure nothing it started lingers.
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that is free now, for a process we spawn to listen on.
///
/// Not `bind(0)`: the kernel hands out ports from its ephemeral range to every listener that
/// binds port 0, and one of ours (the media server, a proxy) can take the port between our
/// pick and the child's bind. cargo-lambda then exits with status 0 ("terminating lambda
/// scheduler"), and `wait_for_port` is answered by the listener that took it, so a test's
/// requests fail later with "connection refused". So the pick comes from below the ephemeral
/// range, which `bind(0)` never uses, and from a per-process sequence that starts at a random
/// place, so that parallel tests in one process never pick the same port and separate
/// processes rarely do.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let low = 20_000;
    let high = ephemeral_low().unwrap_or(32_768).max(low + 1_000);
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        rand::random_range(0..span),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = low + u16::try_from(offset)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port in {low}..{high}")
}

/// The first port of the kernel's ephemeral range (Linux), which `bind(0)` draws from.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits until something accepts TCP connections on `port`, or `process` exits.
pub async fn wait_for_port(
    port: u16,
    process: &mut ManagedProcess,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        anyhow::ensure!(
            process.is_running(),
            "{} exited before listening on port {port}; see its log",
            process.name()
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not listen on port {port} within {timeout:?}",
            process.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_and_never_ones_bind_zero_hands_out() {
        let low = ephemeral_low().unwrap_or(32_768);
        // A listener that binds port 0 holds its port, as the media server does.
        let held: Vec<_> = (0..20)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let picks: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let mut distinct = picks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), picks.len(), "a port picked twice");
        assert!(
            picks.iter().all(|&p| (20_000..low).contains(&p)),
            "{picks:?}"
        );
        for listener in &held {
            assert!(!picks.contains(&listener.local_addr().unwrap().port()));
        }
    }
}
