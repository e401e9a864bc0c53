//! Where things are: the repo, its project-local tools, the built function binaries.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    /// The repo this crate was built from (override with `VOICEHOOKS_ROOT`).
    pub fn locate() -> Self {
        let root = std::env::var_os("VOICEHOOKS_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        Self {
            root: root.canonicalize().unwrap_or(root),
        }
    }

    /// The virtualenv `make` creates with pinned moto and cargo-lambda.
    pub fn stack_tools(&self) -> PathBuf {
        self.root.join(".venv/stack/bin")
    }

    /// A function binary as `cargo build` leaves it (`make build-local`).
    pub fn function_binary(&self, name: &str) -> PathBuf {
        self.target_dir().join("debug").join(name)
    }

    /// A function binary as `cargo build --release` leaves it (what `make bench` cold-starts).
    pub fn release_binary(&self, name: &str) -> PathBuf {
        self.target_dir().join("release").join(name)
    }

    /// The arm64 bootstrap `make build` (cargo lambda) leaves for a function.
    pub fn lambda_bootstrap(&self, name: &str) -> PathBuf {
        self.target_dir()
            .join("lambda")
            .join(name)
            .join("bootstrap")
    }

    pub fn target_dir(&self) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"));
        if target.is_absolute() {
            target
        } else {
            self.root.join(target)
        }
    }

    pub fn template(&self) -> PathBuf {
        self.root.join("infra/template.yaml")
    }

    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }

    /// A fresh folder for one run's logs under `.local/logs/`.
    pub fn log_dir(&self, label: &str) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Parallel tests start in the same millisecond: a sequence number keeps them apart.
        static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self
            .root
            .join(".local/logs")
            .join(format!("{label}-{stamp}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
