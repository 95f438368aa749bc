//! Where the node's configuration comes from and how a new version is taken: the file, with
//! its zones replaced by the control plane's when the node follows one; every load validated
//! in full (self-signed certificates made where a zone asks for them), settings the process
//! was built around refused unless restarted, and the new snapshot swapped in whole.
//!
//! The control plane's zones are kept as received (schema sections, not validated zones): a
//! SIGHUP validates them again together with the file's other sections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edgenet_config::{Config, ConfigError, System, ZoneSection};
use edgenet_proxy::lock;

use crate::node::Node;
use crate::tls::{generate_missing, CertTable, ControlCert};

/// The file and, when the node follows a control plane, the zones and certificates it last
/// applied from there.
pub struct ConfigSource {
    path: PathBuf,
    control_zones: Mutex<Option<Vec<ZoneSection>>>,
    control_certs: Mutex<Arc<Vec<ControlCert>>>,
}

impl ConfigSource {
    /// The source of a node started from `path`, with the control plane's zones when given.
    pub fn new(
        path: PathBuf,
        control_zones: Option<Vec<ZoneSection>>,
        control_certs: Vec<ControlCert>,
    ) -> ConfigSource {
        ConfigSource {
            path,
            control_zones: Mutex::new(control_zones),
            control_certs: Mutex::new(Arc::new(control_certs)),
        }
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Loads the configuration at `path`, with its zones replaced by `zones` when given (a PoP
/// that follows a control plane takes its zones from there and the rest from its file), and
/// creates the self-signed certificates it asks for.
pub fn load(path: &Path, zones: Option<&[ZoneSection]>) -> Result<Config, ConfigError> {
    let mut raw = edgenet_config::read_raw(path)?;
    if let Some(z) = zones {
        raw.zones = z.to_vec();
        raw.certificates_from_control = true;
    }
    let mut config = edgenet_config::validate_file(&raw, path, &System)?;
    generate_missing(&mut config).map_err(|e| ConfigError::Invalid {
        origin: path.display().to_string(),
        errors: vec![edgenet_config::FieldError {
            path: "zones[].tls".into(),
            value: String::new(),
            reason: format!("cannot create the self-signed certificate: {e}"),
        }],
    })?;
    Ok(config)
}

impl Node {
    /// SIGHUP: validates and applies the file again (with the control plane's zones when the
    /// node follows one). Returns the new version, or every error.
    pub fn reload(&self) -> Result<u64, Vec<String>> {
        let zones = lock(&self.source.control_zones).clone();
        let certs = lock(&self.source.control_certs).clone();
        self.reload_with(zones.as_deref(), &certs)
    }

    /// Applies zones and certificates from the control plane with the rest of the file; on
    /// success they are kept for later reloads. Nothing changes on error.
    pub fn apply_control(
        &self,
        zones: Vec<ZoneSection>,
        certs: Vec<ControlCert>,
    ) -> Result<u64, Vec<String>> {
        let version = self.reload_with(Some(&zones), &certs)?;
        *lock(&self.source.control_zones) = Some(zones);
        *lock(&self.source.control_certs) = Arc::new(certs);
        self.core.metrics.reload(true);
        Ok(version)
    }

    fn reload_with(
        &self,
        zones: Option<&[ZoneSection]>,
        control_certs: &[ControlCert],
    ) -> Result<u64, Vec<String>> {
        let path = self.source.path();
        let config = load(path, zones).map_err(|e| e.lines())?;
        let current = self.core.snapshot.load_full();
        let old = &current.config;
        let origin = path.display();
        // Settings the running process was built around; changing them needs a restart.
        let fixed = [
            (config.listeners != old.listeners, "listeners", "listeners"),
            (
                config.admin != old.admin,
                "admin.address",
                "the admin listener",
            ),
            (
                config.access_log != old.access_log,
                "access_log",
                "the access log",
            ),
            (
                config.cache != old.cache,
                "cache",
                "the cache's size or lock timeout",
            ),
            (config.node != old.node, "node", "node settings"),
            (
                config.backbone != old.backbone,
                "backbone.listen",
                "the backbone listener",
            ),
            (
                config.anycast != old.anycast,
                "anycast",
                "the anycast settings",
            ),
            (
                config.workers != old.workers,
                "workers",
                "the worker runtime",
            ),
        ];
        let errors: Vec<String> = fixed
            .iter()
            .filter(|(changed, _, _)| *changed)
            .map(|(_, field, what)| format!("{origin}: {field}: changing {what} needs a restart"))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let certs =
            CertTable::new(&config, control_certs).map_err(|e| vec![format!("{origin}: {e}")])?;
        let version = current.version + 1;
        let snapshot = self
            .core
            .build(Arc::new(config), version)
            .map_err(|e| vec![format!("{origin}: {e}")])?;
        self.certs
            .swap(certs, &self.core.metrics.tls_certificate_expiry);
        self.core.snapshot.store(Arc::new(snapshot));
        self.core.metrics.config_version.set(version as i64);
        Ok(version)
    }
}
