//! What validation needs from the world, behind a trait: file contents, whether a file exists,
//! names resolved to addresses, and the machine's defaults. Validation itself does no IO; the
//! node and the CLI pass [`System`], the control plane too, and tests pass a fake.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The world as validation sees it. Errors are reasons, phrased to follow a field and its
/// value (`cannot be read: No such file or directory`).
pub trait Environment {
    /// The contents of the file at `path`; refused when it is longer than `limit` bytes.
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String>;
    /// `Ok` when something is at `path`, else why not.
    fn exists(&self, path: &Path) -> Result<(), String>;
    /// The addresses `host` resolves to, for `port`.
    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String>;
    /// Proxy threads when the configuration names none: the CPUs this process may use.
    fn cpus(&self) -> usize;
    /// Where files that need no fixed place go (the worker artifact cache by default).
    fn temp_dir(&self) -> PathBuf;
}

/// This machine: its file system, its resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Environment for System {
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot be read: {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(format!("is larger than {limit} bytes"));
        }
        Ok(bytes)
    }

    fn exists(&self, path: &Path) -> Result<(), String> {
        std::fs::metadata(path)
            .map(|_| ())
            .map_err(|e| format!("cannot be read: {e}"))
    }

    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        (host, port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| format!("cannot be resolved: {e}"))
    }

    fn cpus(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn temp_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }
}

/// A world without files or names: every read fails, every lookup fails. For validating text
/// that must not touch the machine (the fuzzers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Environment for Offline {
    fn read(&self, _: &Path, _: u64) -> Result<Vec<u8>, String> {
        Err("cannot be read: no files here".into())
    }

    fn exists(&self, _: &Path) -> Result<(), String> {
        Err("cannot be read: no files here".into())
    }

    fn resolve(&self, _: &str, _: u16) -> Result<Vec<SocketAddr>, String> {
        Err("cannot be resolved: no resolver here".into())
    }

    fn cpus(&self) -> usize {
        1
    }

    fn temp_dir(&self) -> PathBuf {
        PathBuf::from("/nonexistent")
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An environment made of maps, for tests: files by path, addresses by host name.

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    use super::Environment;

    #[derive(Debug, Default)]
    pub struct Fake {
        pub files: HashMap<PathBuf, Vec<u8>>,
        pub hosts: HashMap<String, Vec<std::net::IpAddr>>,
    }

    impl Environment for Fake {
        fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String> {
            let bytes = self
                .files
                .get(path)
                .ok_or("cannot be read: No such file or directory (os error 2)")?;
            if bytes.len() as u64 > limit {
                return Err(format!("is larger than {limit} bytes"));
            }
            Ok(bytes.clone())
        }

        fn exists(&self, path: &Path) -> Result<(), String> {
            self.read(path, u64::MAX).map(|_| ())
        }

        fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
            let ips = self
                .hosts
                .get(host)
                .ok_or("cannot be resolved: failed to lookup address information")?;
            Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
        }

        fn cpus(&self) -> usize {
            3
        }

        fn temp_dir(&self) -> PathBuf {
            PathBuf::from("/fake-tmp")
        }
    }
}
