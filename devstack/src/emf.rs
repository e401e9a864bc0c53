//! The functions' CloudWatch embedded-metric-format lines, read back from a run's logs: how
//! `make bench` counts AWS calls per event and the chaos run counts what the functions saw
//! (spills, stale tokens), from the same figures CloudWatch would get.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use voicehooks::aws::CALL_METRIC_PREFIX;

/// The EMF lines each process of the stack printed, summed: one entry per log file
/// (`<function>-<instance>.log`, one process each; a restarted instance appends).
#[derive(Debug, Default, Clone)]
pub struct Emf {
    /// Per function: metric → every value recorded (a count's sum is theirs).
    pub values: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// Per function: EMF documents (one per invocation).
    invocations: BTreeMap<String, u64>,
    /// Per log file: Secrets Manager reads.
    pub secret_reads: Vec<(String, f64)>,
}

impl Emf {
    /// Reads every function log in `dir`, from the byte offsets in `from` (so a window of a
    /// run can be read); returns the figures and the new offsets.
    pub fn read(
        dir: &Path,
        from: &BTreeMap<PathBuf, u64>,
    ) -> anyhow::Result<(Self, BTreeMap<PathBuf, u64>)> {
        let mut emf = Self::default();
        let mut offsets = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(file) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let Some((function, instance)) = file.rsplit_once('-') else {
                continue;
            };
            if instance.parse::<u32>().is_err() || file.starts_with("coldstart") {
                continue;
            }
            let text = std::fs::read(&path)?;
            let start = from.get(&path).copied().unwrap_or(0) as usize;
            offsets.insert(path.clone(), text.len() as u64);
            let mut secret_reads = 0.0;
            for line in String::from_utf8_lossy(&text[start.min(text.len())..]).lines() {
                let Ok(doc) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let Some(metrics) = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array()
                else {
                    continue;
                };
                *emf.invocations.entry(function.to_owned()).or_default() += 1;
                for metric in metrics {
                    let Some(metric) = metric["Name"].as_str() else {
                        continue;
                    };
                    let values: Vec<f64> = match &doc[metric] {
                        Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
                        v => v.as_f64().into_iter().collect(),
                    };
                    if metric == "Aws.SecretsManager.GetSecretValue" {
                        secret_reads += values.iter().sum::<f64>();
                    }
                    emf.values
                        .entry(function.to_owned())
                        .or_default()
                        .entry(metric.to_owned())
                        .or_default()
                        .extend(values);
                }
            }
            emf.secret_reads.push((file, secret_reads));
        }
        Ok((emf, offsets))
    }

    pub fn sum(&self, function: &str, metric: &str) -> f64 {
        self.values
            .get(function)
            .and_then(|m| m.get(metric))
            .map_or(0.0, |v| v.iter().sum())
    }

    /// Every `Aws.<service>.<operation>` of `function`: (operation, requests).
    pub fn operations<'a>(
        &'a self,
        function: &str,
        service: &str,
    ) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        let prefix = format!("{CALL_METRIC_PREFIX}{service}.");
        self.values
            .get(function)
            .into_iter()
            .flatten()
            .filter_map(move |(k, v)| {
                let op = k.strip_prefix(&prefix)?;
                Some((op, v.iter().sum()))
            })
    }

    /// Sum of every `Aws.<service>.<operation>` of `function` whose operation passes `op`.
    pub fn calls(&self, function: &str, service: &str, op: impl Fn(&str) -> bool) -> f64 {
        self.operations(function, service)
            .filter(|(o, _)| op(o))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn invocations(&self, function: &str) -> f64 {
        self.invocations.get(function).copied().unwrap_or(0) as f64
    }

    pub fn all_values(&self, functions: &[&str], metric: &str) -> Vec<f64> {
        functions
            .iter()
            .filter_map(|f| self.values.get(*f).and_then(|m| m.get(metric)))
            .flatten()
            .copied()
            .collect()
    }
}

impl Emf {
    /// A count's total over every function.
    pub fn total(&self, metric: &str) -> f64 {
        self.values
            .values()
            .filter_map(|m| m.get(metric))
            .flatten()
            .sum()
    }
}
