//! Whether the node is under pressure, for the per-address connection cap
//! (`limits.max_connections_per_client` applies only then, or to an abusive address): open
//! client connections past `limits.pressure_connections` (default half the open-file limit),
//! or resident memory past `limits.pressure_memory` (default 80% of what the node may use: its
//! cgroup's `memory.max`, else the machine's memory). The resident size is read from
//! `/proc/self/statm` at most every 250 ms, so an accept costs a comparison.
//!
//! At start the node raises its open-file limit to the hard limit (as nginx's
//! `worker_rlimit_nofile` would): a NAT's thousands of connections need descriptors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use edgenet_config::Limits;

/// How often the resident size is read.
const SAMPLE_EVERY_MS: u64 = 250;

/// The node's pressure gauges and the defaults found at start.
pub struct Pressure {
    /// Half the open-file limit.
    auto_connections: u32,
    /// 80% of the memory the node may use.
    auto_memory: u64,
    started: Instant,
    rss: AtomicU64,
    /// Milliseconds after `started` of the last sample (`u64::MAX`: none yet).
    sampled: AtomicU64,
}

impl Pressure {
    /// Raises the open-file limit and finds the defaults.
    pub fn start() -> Pressure {
        let files = raise_open_file_limit();
        let memory = memory_available();
        tracing::info!(
            open_files = files,
            memory_bytes = memory,
            "connection pressure defaults: half the open files, 80% of the memory"
        );
        Pressure::with(files, memory)
    }

    fn with(open_files: u64, memory: u64) -> Pressure {
        Pressure {
            auto_connections: u32::try_from(open_files / 2).unwrap_or(u32::MAX).max(64),
            auto_memory: memory / 10 * 8,
            started: Instant::now(),
            rss: AtomicU64::new(0),
            sampled: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether `open` client connections (and the memory in use) put the node under pressure
    /// by `limits`.
    pub fn under(&self, limits: &Limits, open: u32) -> bool {
        open >= limits.pressure_connections.unwrap_or(self.auto_connections)
            || self.rss() >= limits.pressure_memory.unwrap_or(self.auto_memory)
    }

    fn rss(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.sampled.load(Ordering::Relaxed);
        if last == u64::MAX || now.saturating_sub(last) >= SAMPLE_EVERY_MS {
            self.sampled.store(now, Ordering::Relaxed);
            self.rss.store(resident_bytes(), Ordering::Relaxed);
        }
        self.rss.load(Ordering::Relaxed)
    }
}

/// Raises the soft open-file limit to the hard one; returns the soft limit after.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// The resident set of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

/// The memory this process may use: its cgroup's `memory.max` when set, else the machine's.
fn memory_available() -> u64 {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let limit = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|path| {
            std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim())).ok()
        })
        .and_then(|m| m.trim().parse::<u64>().ok());
    let total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(u64::MAX, |kib| kib * 1024);
    limit.map_or(total, |l| l.min(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: Option<u32>, memory: Option<u64>) -> Limits {
        use std::time::Duration;
        Limits {
            max_request_header_bytes: 32 * 1024,
            max_connections_per_client: 256,
            pressure_connections: connections,
            pressure_memory: memory,
            abusive_for: Duration::from_secs(600),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            h2_max_control_frames: 200,
        }
    }

    #[test]
    fn pressure_comes_from_connections_or_memory_with_defaults_from_the_machine() {
        let p = Pressure::with(20_000, 1 << 40);
        let auto = limits(None, None);
        assert!(!p.under(&auto, 9_999));
        assert!(p.under(&auto, 10_000), "half the open files");
        assert!(p.under(&limits(Some(100), None), 100));
        assert!(!p.under(&limits(Some(100), None), 99));
        // This test process uses more than a MiB.
        assert!(p.under(&limits(None, Some(1 << 20)), 0), "memory");
        assert!(resident_bytes() > 1 << 20);
        assert!(memory_available() > 1 << 26);
        assert!(raise_open_file_limit() >= 1024);
    }
}
