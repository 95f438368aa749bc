//! Upgrading the binary without losing a request: `edgenet pop --upgrade` takes over from the
//! node running with the same configuration file, as nginx's binary upgrade does.
//!
//! The two processes find each other through two files beside that file ([`NodeFiles`]):
//! `NAME.pid`, the running node's process id (locked with flock(2) while it runs, so a file
//! left by a node that died is told apart from a live one, whatever process has its id now),
//! and `NAME.upgrade.sock`, where the new process waits for the listening sockets. The new process builds everything that can fail first
//! (configuration, certificates, workers), then asks the old one with SIGQUIT. The old one
//! checks that somebody waits at the socket (a stray SIGQUIT changes nothing), hands over its
//! BGP sessions and anycast addresses, and passes every listening socket with SCM_RIGHTS
//! (Pingora's descriptor transfer). For Pingora's close timeout (5 s) both processes accept
//! from the same sockets, so no connection meets a closed port; then the old one stops
//! accepting, finishes the requests it has, closes its idle connections, and exits 0.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest path a Unix socket address holds (`sun_path`, with its terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// The files beside a node's configuration file that let a new process find the running one.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// `NAME.pid`: the running node's process id.
    pub pid: PathBuf,
    /// `NAME.upgrade.sock`: where a new process waits for the listening sockets.
    pub upgrade_sock: PathBuf,
}

impl NodeFiles {
    /// The files for the node configured by `config` (`edgenet.toml` gives `edgenet.pid` and
    /// `edgenet.upgrade.sock` in the same directory).
    pub fn beside(config: &Path) -> anyhow::Result<NodeFiles> {
        let stem = config
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--config {}: not a file name", config.display()))?;
        let dir = config.parent().unwrap_or(Path::new("."));
        Ok(NodeFiles {
            pid: dir.join(format!("{stem}.pid")),
            upgrade_sock: dir.join(format!("{stem}.upgrade.sock")),
        })
    }

    /// Refuses an upgrade socket path longer than a Unix socket address holds: checked by
    /// `--upgrade` only, so a node at a long path still runs (it just cannot be upgraded).
    pub fn check_socket_path(&self) -> anyhow::Result<()> {
        let len = self.upgrade_sock.as_os_str().len();
        if len > SUN_PATH_MAX {
            anyhow::bail!(
                "--upgrade: the upgrade socket {} would be {len} bytes long, more than a Unix \
                 socket address holds ({SUN_PATH_MAX}): move the configuration file to a \
                 shorter path",
                self.upgrade_sock.display()
            );
        }
        Ok(())
    }

    /// Records this process as the node's running one. The file is locked for as long as the
    /// returned handle lives: keep it for the life of the process.
    pub fn write_pid(&self) -> anyhow::Result<std::fs::File> {
        let fail = |e: io::Error| anyhow::anyhow!("the pid file {}: {e}", self.pid.display());
        let tmp = self.pid.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(fail)?;
        let file = std::fs::File::open(&tmp).map_err(fail)?;
        if !try_lock(&file).map_err(fail)? {
            return Err(fail(io::Error::other("another process locked it first")));
        }
        // A new inode: the old node's lock stays on the file it opened until it exits.
        std::fs::rename(&tmp, &self.pid).map_err(fail)?;
        Ok(file)
    }

    /// Removes the pid file if it still names this process (a successor has written its own).
    pub fn remove_pid_if_mine(&self) {
        if read_pid(&self.pid).ok() == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.pid);
        }
    }

    /// The process id of the node running with this configuration, for `--upgrade`: the pid
    /// file must be there and locked by a live node.
    pub fn running(&self) -> anyhow::Result<u32> {
        let none = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "--upgrade: no running node to take over from: {}: {e}",
                self.pid.display()
            )
        };
        let file = std::fs::File::open(&self.pid).map_err(|e| none(&e))?;
        let pid = read_pid(&self.pid).map_err(|e| none(&e))?;
        if try_lock(&file).map_err(|e| none(&e))? || pid == std::process::id() {
            anyhow::bail!(
                "--upgrade: {} names process {pid}, which is not a running node: start the \
                 node without --upgrade",
                self.pid.display()
            );
        }
        Ok(pid)
    }
}

fn read_pid(path: &Path) -> io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{:?} is not a process id", text.trim()),
        )
    })
}

/// Takes an exclusive flock(2) on `file` without waiting: false if another holds one.
fn try_lock(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this function borrows; no memory is involved.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Asks the running node `pid` to hand its listening sockets over (SIGQUIT). The caller waits
/// for them at the upgrade socket next (Pingora's bootstrap does, for about 5 s).
pub fn ask_to_hand_over(pid: u32, files: &NodeFiles) -> anyhow::Result<()> {
    // A socket left by an attempt that died would make the old process send into nothing.
    let _ = std::fs::remove_file(&files.upgrade_sock);
    let raw = i32::try_from(pid).map_err(|_| anyhow::anyhow!("process id {pid} out of range"))?;
    // SAFETY: kill(2) sends a signal; no memory is involved.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(raw, libc::SIGQUIT) };
    if rc != 0 {
        anyhow::bail!(
            "--upgrade: cannot signal process {pid}: {}",
            io::Error::last_os_error()
        );
    }
    tracing::info!(
        old = pid,
        socket = %files.upgrade_sock.display(),
        "upgrade: asked the running node for its listening sockets"
    );
    Ok(())
}

/// Whether a new process waits at `sock` (it appears within `within`): the old process's check
/// before it hands anything over.
pub async fn successor_waiting(sock: &Path, within: Duration) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let deadline = Instant::now() + within;
    loop {
        if std::fs::symlink_metadata(sock).is_ok_and(|m| m.file_type().is_socket()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_after_the_configuration() {
        let f = NodeFiles::beside(Path::new("/etc/edgenet/pop.toml")).unwrap();
        assert_eq!(f.pid, Path::new("/etc/edgenet/pop.pid"));
        assert_eq!(f.upgrade_sock, Path::new("/etc/edgenet/pop.upgrade.sock"));
        let long = format!("/{}/pop.toml", "d".repeat(120));
        let f = NodeFiles::beside(Path::new(&long)).unwrap();
        let e = f.check_socket_path().unwrap_err().to_string();
        assert!(e.contains("more than a Unix socket address holds"), "{e}");
    }

    #[test]
    fn a_pid_file_of_a_process_that_is_gone_is_refused() {
        let dir = std::env::temp_dir().join(format!("edgenet-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = NodeFiles::beside(&dir.join("n.toml")).unwrap();
        let missing = f.running().unwrap_err().to_string();
        assert!(
            missing.contains("no running node to take over from"),
            "{missing}"
        );
        // Left by a node that died: nobody holds the lock, whatever runs as process 1 now.
        std::fs::write(&f.pid, "1\n").unwrap();
        let gone = f.running().unwrap_err().to_string();
        assert!(gone.contains("which is not a running node"), "{gone}");
        let lock = f.write_pid().unwrap();
        let me = f.running().unwrap_err().to_string();
        assert!(me.contains("not a running node"), "not from itself: {me}");
        // Held while the handle lives: another open file sees the lock.
        assert!(!try_lock(&std::fs::File::open(&f.pid).unwrap()).unwrap());
        f.remove_pid_if_mine();
        assert!(!f.pid.exists());
        drop(lock);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
