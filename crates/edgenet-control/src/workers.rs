//! Worker scripts as account objects: each upload of a component is a version, stored by
//! content (SHA-256, in the `blobs` table) once it passed the same check a PoP makes before it
//! runs one (compiled and linked as a `wasi:http/proxy` component, in a separate process);
//! routes bind a pattern of one of the account's zones to a script, at its latest version or a
//! pinned one (a rollback is a route pinned to an earlier version). Settings (variables,
//! limits, allowed hosts) and secrets (write-only: sealed at rest under the certificates'
//! sealing key, and again to each PoP's key in the stream) belong to the script.
//!
//! Each script is streamed as one `worker` object ([`publish`]) carrying the versions its
//! routes run; PoPs fetch each component by hash (`GET /v1/workers/components/SHA256`),
//! verify it, compile it and switch to it once it is ready.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use edgenet_config::WorkerLimitsSection;
use edgenet_protocol::{ComponentRef, Kind, SealedSecret, WorkerProvision, WorkerRouteProvision};
use serde::{Deserialize, Serialize};

use crate::api::records::{parse, to_value};
use crate::api::App;
use crate::certificates::B64;
use crate::store::{Owner, Record, RecordKind, StoreError};

/// The largest component accepted (a JavaScript component built with ComponentizeJS is about
/// 12 MB).
pub const MAX_COMPONENT: usize = 32 << 20;
/// Versions kept per script: the oldest one no route pins goes past this.
pub const MAX_VERSIONS: usize = 100;

/// How uploads are checked: a function of the component's file that says why it cannot run.
pub type Validate = dyn Fn(&std::path::Path) -> Result<(), String> + Send + Sync;

/// The control plane's worker settings.
pub struct Workers {
    /// Checks an uploaded component.
    pub validate: Box<Validate>,
    /// Where uploads wait while they are checked.
    pub scratch: PathBuf,
}

impl Workers {
    /// Uploads checked by `exe worker-compile` (the `edgenet` binary), as a PoP compiles them,
    /// with artifacts under `dir` (thrown away), or in `keep` (kept: an artifact's name says
    /// which engine settings load it, and the settings that change it are the same at every
    /// PoP of this build, so PoPs that share the directory load it as it is).
    pub fn compiling(exe: PathBuf, dir: PathBuf, keep: Option<PathBuf>) -> Workers {
        let thrown_away = keep.is_none();
        let cache = keep.unwrap_or_else(|| dir.join("artifacts"));
        Workers {
            validate: Box::new(move |wasm| {
                std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
                let out = std::process::Command::new(&exe)
                    .arg("worker-compile")
                    .arg("--cache")
                    .arg(&cache)
                    .args([
                        "--instances",
                        "1",
                        "--max-memory",
                        &(128u64 << 20).to_string(),
                    ])
                    .arg(wasm)
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
                if out.status.success() {
                    if thrown_away {
                        // Only the check was wanted: the PoPs compile for their own engines.
                        let artifact = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        let _ = std::fs::remove_file(artifact);
                    }
                    Ok(())
                } else {
                    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    Err(err
                        .strip_prefix("is not a usable wasi:http/proxy component: ")
                        .unwrap_or(&err)
                        .to_string())
                }
            }),
            scratch: dir.join("uploads"),
        }
    }
}

/// One uploaded version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptVersion {
    /// 1, 2, ...
    pub number: u32,
    /// The component's SHA-256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Unix milliseconds.
    pub uploaded_ms: i64,
}

/// What a script runs with, besides its secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Environment variables.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Hosts it may send requests to (served by zones of the PoP).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits per request.
    #[serde(default)]
    pub limits: WorkerLimitsSection,
    /// KV namespaces it opens (`wasi:keyvalue/store.open(BINDING)`): binding to namespace id.
    #[serde(default)]
    pub kv_namespaces: BTreeMap<String, String>,
}

/// A script record's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredScript {
    /// Its name in the account.
    pub name: String,
    /// Every version kept, oldest first.
    pub versions: Vec<ScriptVersion>,
    /// Settings.
    #[serde(default)]
    pub settings: Settings,
    /// Secrets by name, each sealed at rest.
    #[serde(default)]
    pub secrets: BTreeMap<String, StoredSecret>,
}

/// A secret at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// The value sealed under the sealing key (base64), for `secret_context`.
    pub sealed: String,
    /// New at each write.
    pub revision: String,
}

impl StoredScript {
    /// The latest version.
    pub fn latest(&self) -> Option<&ScriptVersion> {
        self.versions.last()
    }

    /// Version `n`.
    pub fn version(&self, n: u32) -> Option<&ScriptVersion> {
        self.versions.iter().find(|v| v.number == n)
    }
}

/// A route record's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRoute {
    /// `host/path`, a trailing `*` for any rest.
    pub pattern: String,
    /// The script.
    pub script: String,
    /// A pinned version; none: the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The zone whose hostname the pattern names (found when written).
    #[serde(default)]
    pub zone: String,
}

/// The record id of `account`'s script `name`.
pub fn script_id(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

/// What a sealed secret's associated data is at rest.
pub fn secret_context(record: &str, secret: &str) -> String {
    format!("{record}/secret/{secret}")
}

/// Whether a script or secret name is acceptable: letters, digits, `-` and `_`, at most 63.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Streams `account`'s script `name` (its routes and the versions they run, settings and
/// secrets sealed to each PoP), or removes it from the stream when the script is gone. An
/// unchanged script makes no version (a PoP's existing seal is kept while its key is the same).
pub async fn publish(app: &App, account: &str, name: &str) -> Result<(), StoreError> {
    let id = script_id(account, name);
    let owner = Owner::Account(account);
    let before = app.store.get(Kind::Worker, &id, owner).await?;
    let Some(r) = app
        .store
        .record(RecordKind::WorkerScript, &id, owner)
        .await?
    else {
        if before.is_some() {
            app.put(Kind::Worker, &id, None, false, None, owner).await?;
        }
        return Ok(());
    };
    let script: StoredScript = parse(&r)?;
    let routes: Vec<StoredRoute> = app
        .store
        .records(RecordKind::WorkerRoute, owner)
        .await?
        .iter()
        .filter_map(|r| parse::<StoredRoute>(r).ok())
        .filter(|r| r.script == name)
        .collect();
    let mut versions = BTreeMap::new();
    let mut provision_routes = Vec::new();
    for route in &routes {
        let v = match route.version {
            Some(n) => script.version(n),
            None => script.latest(),
        };
        let Some(v) = v else { continue };
        versions.insert(
            v.number,
            ComponentRef {
                sha256: v.sha256.clone(),
                size: v.size,
            },
        );
        provision_routes.push(WorkerRouteProvision {
            pattern: route.pattern.clone(),
            zone: route.zone.clone(),
            version: v.number,
        });
    }
    let old: Option<WorkerProvision> = before
        .as_ref()
        .and_then(|b| serde_json::from_value(b.body.clone()).ok());
    let secrets = seal_secrets(app, &r, &script, old.as_ref()).await?;
    let provision = WorkerProvision {
        account: account.to_string(),
        name: name.to_string(),
        versions,
        routes: provision_routes,
        vars: script.settings.vars.clone(),
        secrets,
        allowed_hosts: script.settings.allowed_hosts.clone(),
        limits: script.settings.limits.clone(),
        kv_namespaces: script.settings.kv_namespaces.clone(),
    };
    if old.as_ref() == Some(&provision) {
        return Ok(());
    }
    let body = to_value(&provision);
    let version = app
        .put(
            Kind::Worker,
            &id,
            Some(&body),
            before.is_none(),
            None,
            owner,
        )
        .await?;
    tracing::info!(%account, script = %name, routes = provision.routes.len(), versions = ?provision.versions.keys().collect::<Vec<_>>(), version, "worker streamed");
    Ok(())
}

/// Each secret of `script` sealed to every PoP with a registered key (a seal in `old` is kept
/// while the PoP's key and the secret's revision are the same).
async fn seal_secrets(
    app: &App,
    r: &Record,
    script: &StoredScript,
    old: Option<&WorkerProvision>,
) -> Result<BTreeMap<String, SealedSecret>, StoreError> {
    let mut out = BTreeMap::new();
    if script.secrets.is_empty() {
        return Ok(out);
    }
    let certs = app
        .certs
        .get()
        .ok_or_else(|| StoreError::Refused("no sealing key for secrets".into()))?;
    let keys = crate::certificates::pop_keys(app).await?;
    for (secret, stored) in &script.secrets {
        let kept = old
            .and_then(|o| o.secrets.get(secret))
            .filter(|s| s.revision == stored.revision);
        let pops = crate::certificates::seal_to_pops(
            &keys,
            |pop| kept.and_then(|s| s.pops.get(pop)),
            || {
                let bytes = B64
                    .decode(&stored.sealed)
                    .map_err(|_| StoreError::Refused(format!("secret {secret}: not base64")))?;
                certs
                    .sealing
                    .open(&bytes, &secret_context(&r.id, secret))
                    .map_err(|e| StoreError::Refused(format!("secret {secret}: {e}")))
            },
            |pop| WorkerProvision::seal_context(pop, &r.id, secret),
        )?;
        out.insert(
            secret.clone(),
            SealedSecret {
                revision: stored.revision.clone(),
                pops,
            },
        );
    }
    Ok(out)
}
