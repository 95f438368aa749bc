//! Who may change a PoP's state through its admin listener (purges, anycast drain and
//! undrain, anything later). Over TCP a call needs `Authorization: Bearer TOKEN` with the
//! PoP-local token (`admin.token_file`, read at each call so a rotated file takes effect at
//! once) or a control-plane token with the `pop-admin` scope (its hash arrives with the
//! configuration stream and leaves when it is revoked). Over the admin Unix socket the file's
//! mode decides, and no token is asked for. Reading (`/metrics`, `/health`, `/ready`,
//! `GET /anycast`, `/backbone`) stays open.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use edgenet_config::{Admin, AdminAuth};
use edgenet_protocol::token_hash;

/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// The admin listener's keys.
pub struct AdminKeys {
    auth: AdminAuth,
    /// The PoP-local token's file.
    local: Option<PathBuf>,
    /// Hashes of the control plane's `pop-admin` tokens.
    control: ArcSwap<HashSet<String>>,
}

/// Why a call was refused (each a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    #[error("this call changes the PoP's state and needs Authorization: Bearer TOKEN (the PoP's admin.token_file or a control-plane pop-admin token), or the admin socket")]
    Missing,
    /// A token that is neither the local one nor a control plane's.
    #[error("unknown or revoked admin token")]
    Unknown,
}

impl AdminKeys {
    /// The keys of an admin listener: creates the token file (a random token, mode 0600)
    /// when it is missing, and refuses one that group or others may read or write.
    pub fn prepare(admin: &Admin) -> anyhow::Result<AdminKeys> {
        if let Some(path) = &admin.token_file {
            prepare_token_file(path)?;
        }
        Ok(AdminKeys {
            auth: admin.auth,
            local: admin.token_file.clone(),
            control: ArcSwap::from_pointee(HashSet::new()),
        })
    }

    /// The keys of a node without an admin listener (nothing asks them).
    pub fn none_configured() -> AdminKeys {
        AdminKeys {
            auth: AdminAuth::Token,
            local: None,
            control: ArcSwap::from_pointee(HashSet::new()),
        }
    }

    /// Replaces the control plane's tokens (hashes) with those of its latest version.
    pub fn set_control<'a>(&self, hashes: impl IntoIterator<Item = &'a str>) {
        let set: HashSet<String> = hashes.into_iter().map(String::from).collect();
        if **self.control.load() != set {
            tracing::info!(tokens = set.len(), "admin: control-plane pop-admin tokens");
            self.control.store(Arc::new(set));
        }
    }

    /// Whether a state-changing call over TCP with this `Authorization` header may go on.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        if self.auth == AdminAuth::None {
            return Ok(());
        }
        let presented = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        // Hashes are compared, never the secrets: the time a comparison takes says nothing
        // of the secret.
        let hash = token_hash(presented);
        let local = self.local.as_deref().and_then(read_token);
        if local.is_some_and(|t| token_hash(&t) == hash) || self.control.load().contains(&hash) {
            Ok(())
        } else {
            Err(Refusal::Unknown)
        }
    }
}

/// The local token, or none (and a log line) when the file cannot be read.
fn read_token(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "admin.token_file cannot be read");
            None
        }
    }
}

fn prepare_token_file(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "admin.token_file {shown}: mode {mode:04o} lets group or others read it; \
                     make it the node user's only (chmod 600)"
                );
            }
            if read_token(path).is_none() {
                anyhow::bail!("admin.token_file {shown}: holds no token");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = format!("enp_{}", random_hex(32));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("admin.token_file {shown}: cannot be created: {e}"))?;
            f.write_all(format!("{token}\n").as_bytes())
                .map_err(|e| anyhow::anyhow!("admin.token_file {shown}: {e}"))?;
            tracing::info!(path = %shown, "admin: created the PoP's admin token");
            Ok(())
        }
        Err(e) => anyhow::bail!("admin.token_file {shown}: cannot be read: {e}"),
    }
}

/// `n` bytes of the kernel's random source, in hex.
fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("the kernel's random source can be read");
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(dir: &Path, auth: AdminAuth) -> Admin {
        Admin {
            address: "127.0.0.1:9".parse().unwrap(),
            socket: None,
            token_file: Some(dir.join("admin-token")),
            auth,
        }
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn the_local_token_is_made_private_and_rotates_with_its_file() {
        let dir = std::env::temp_dir().join(format!("edgenet-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = admin(&dir, AdminAuth::Token);
        let keys = AdminKeys::prepare(&a).unwrap();
        let file = a.token_file.as_ref().unwrap();
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(file).unwrap().trim().to_string();
        assert!(token.starts_with("enp_") && token.len() == 68, "{token}");
        assert_eq!(keys.check(Some(&bearer(&token))), Ok(()));
        assert_eq!(keys.check(None), Err(Refusal::Missing));
        assert_eq!(keys.check(Some(b"Bearer ")), Err(Refusal::Missing));
        assert_eq!(
            keys.check(Some(&bearer("enp_wrong"))),
            Err(Refusal::Unknown)
        );

        std::fs::write(file, "rotated\n").unwrap();
        assert_eq!(keys.check(Some(&bearer(&token))), Err(Refusal::Unknown));
        assert_eq!(keys.check(Some(&bearer("rotated"))), Ok(()));

        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AdminKeys::prepare(&a).err().unwrap().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_plane_tokens_come_and_go_and_none_asks_for_nothing() {
        let a = Admin {
            token_file: None,
            ..admin(Path::new("/nonexistent"), AdminAuth::Token)
        };
        let keys = AdminKeys::prepare(&a).unwrap();
        assert_eq!(keys.check(Some(&bearer("en_cp"))), Err(Refusal::Unknown));
        let hash = token_hash("en_cp");
        keys.set_control([hash.as_str()]);
        assert_eq!(keys.check(Some(&bearer("en_cp"))), Ok(()));
        keys.set_control([]);
        assert_eq!(
            keys.check(Some(&bearer("en_cp"))),
            Err(Refusal::Unknown),
            "revoked"
        );

        let open = Admin {
            token_file: None,
            ..admin(Path::new("/nonexistent"), AdminAuth::None)
        };
        assert_eq!(AdminKeys::prepare(&open).unwrap().check(None), Ok(()));
    }
}
