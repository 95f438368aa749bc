//! A PoP whose zones come from a control plane: it starts from its last-known-good file (so it
//! serves with the control plane down), gets its backbone certificate before its backbone
//! listener starts, then follows the stream on a thread of its own, each version applied
//! through [`NodeApplier`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, Weak};

use base64::Engine;
use edgenet_config::ZoneSection;
use edgenet_protocol::{CertificateProvision, ObjectReport, ObjectState, Objects, ReportedKind};
use edgenet_proxy::backbone::PopDirectory;
use edgenet_proxy::lock;
use edgenet_proxy::stages::challenge::Challenges;

use super::{Applier, ApplyError, FollowOptions};
use crate::node::Node;
use crate::server::{run_with, RunOptions};
use crate::tls::ControlCert;

/// How to follow.
#[derive(Debug, Clone)]
pub struct Following {
    /// The node's configuration file (its zones are ignored).
    pub config: PathBuf,
    /// `http://host:port` of the control plane, or `nats://host:port[?domain=hub]`.
    pub control: String,
    /// The PoP's registered name.
    pub name: String,
    /// A token with the `pop` scope (needed over HTTP).
    pub token: Option<String>,
    /// The last-known-good file (default: NAME.control-state.json beside the config).
    pub state: Option<PathBuf>,
    /// Take over from the node running with this configuration file (`--upgrade`).
    pub upgrade: bool,
}

/// Applies each version of the control plane's objects to the node: the PoP directory, the
/// ACME challenges, then the zones with their certificates and the rest of the file.
pub struct NodeApplier {
    /// The node.
    pub node: Arc<Node>,
    /// The PoP's registered name (whose CNIs it runs).
    pub pop: String,
    /// The key certificates' private keys are sealed to.
    pub key: Arc<edgenet_certs::to_pop::PopKey>,
    /// The certificates opened so far (by id, with what they were opened from), and each
    /// one's state after the last version.
    pub certificates: Mutex<OpenedCertificates>,
    /// Where worker components fetched by hash are kept.
    pub components: PathBuf,
    /// Each worker's state after the last version.
    pub workers: Mutex<Vec<ObjectReport>>,
    /// What each route of the control plane's workers runs now, by zone and pattern: kept
    /// while a newer version of it is being built.
    pub serving: Mutex<HashMap<(String, String), ZoneWorker>>,
    /// Components being built in the background.
    pub building: Mutex<HashSet<PathBuf>>,
    /// Components whose build failed here, with why (not tried again until a restart).
    pub failed: Mutex<HashMap<PathBuf, String>>,
    /// The last version applied: applied again when a build ends.
    pub last: Mutex<Option<Objects>>,
    /// Versions are applied one at a time (the follower's and a finished build's).
    pub applying: Mutex<()>,
    /// The ids of the control plane's purges applied to the cache (those still listed).
    pub purged: Mutex<HashSet<String>>,
    /// This applier, for the build threads.
    pub me: OnceLock<Weak<NodeApplier>>,
}

/// The certificates a PoP opened, and each one's state.
#[derive(Debug, Default)]
pub struct OpenedCertificates {
    by_id: HashMap<String, (CertificateProvision, ControlCert)>,
    states: Vec<ObjectReport>,
}

impl OpenedCertificates {
    /// Opens every certificate of `o` that is new or changed (the others are kept as they
    /// were opened): those that open, to serve; each one's state, to report.
    pub fn open(
        &mut self,
        o: &Objects,
        pop: &str,
        key: &edgenet_certs::to_pop::PopKey,
    ) -> Vec<ControlCert> {
        let mut by_id = HashMap::new();
        let mut states = Vec::new();
        for (id, c) in o.objects.certificates() {
            let opened = match self.by_id.remove(id) {
                Some((had, cert)) if had == *c => Ok(cert),
                _ => crate::tls::open_control(id, c, pop, key),
            };
            let (state, detail) = match opened {
                Ok(cert) => {
                    let detail = format!("serial {}", cert.serial);
                    by_id.insert(id.to_string(), (c.clone(), cert));
                    (ObjectState::Applied, detail)
                }
                Err(why) => {
                    tracing::warn!(certificate = %id, zone = %c.zone, error = %why, "cannot serve a certificate from the control plane");
                    (ObjectState::Refused, why)
                }
            };
            states.push(ObjectReport {
                kind: ReportedKind::Certificate,
                name: id.to_string(),
                state,
                version: o.version,
                detail: Some(detail),
            });
        }
        self.by_id = by_id;
        self.states = states;
        self.by_id.values().map(|(_, c)| c.clone()).collect()
    }
}

/// A worker of the control plane's as a zone runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneWorker {
    /// The zone.
    pub zone: String,
    /// The script (`ACCOUNT/NAME`).
    pub script: String,
    /// The version.
    pub version: u32,
    /// Its `[[zones.workers]]` entry.
    pub section: edgenet_config::WorkerSection,
}

/// The control plane's workers as zones run them: each (script, version) a `[[zones.workers]]`
/// entry of its zone, its component the file fetched by hash, its secrets opened with the
/// PoP's key (given to the worker as environment variables, as secrets from files are). A
/// version whose component is not here yet, or a secret that does not open, is left out and
/// the script's state says why. Returns the workers and each script's state.
pub fn control_workers(
    zones: &[ZoneSection],
    o: &Objects,
    components: &Path,
    pop: &str,
    key: &edgenet_certs::to_pop::PopKey,
) -> (Vec<ZoneWorker>, Vec<ObjectReport>) {
    let mut states = Vec::new();
    let mut out = Vec::new();
    for w in o.objects.workers() {
        let id = format!("{}/{}", w.account, w.name);
        let mut problems = Vec::new();
        let mut env = w.vars.clone();
        for (name, sealed) in &w.secrets {
            match open_secret(&id, name, sealed, pop, key) {
                Ok(v) => {
                    env.insert(name.clone(), v);
                }
                Err(e) => problems.push(format!("secret {name}: {e}")),
            }
        }
        let mut ready = Vec::new();
        for (number, c) in &w.versions {
            let file = super::component_file(components, &c.sha256);
            if !file.exists() {
                problems.push(format!(
                    "version {number}: component {} not fetched yet",
                    c.sha256
                ));
                continue;
            }
            let routes: Vec<&edgenet_protocol::WorkerRouteProvision> =
                w.routes.iter().filter(|r| r.version == *number).collect();
            let Some(zone_name) = routes.first().map(|r| r.zone.clone()) else {
                continue;
            };
            if !zones.iter().any(|z| z.name == zone_name) {
                problems.push(format!("zone {zone_name} is not served here"));
                continue;
            }
            out.push(ZoneWorker {
                zone: zone_name,
                script: id.clone(),
                version: *number,
                section: edgenet_config::WorkerSection {
                    name: format!("{}-v{number}", w.name),
                    component: file,
                    routes: routes.iter().map(|r| r.pattern.clone()).collect(),
                    env: env.clone(),
                    secrets: Default::default(),
                    allowed_hosts: w.allowed_hosts.clone(),
                    limits: w.limits.clone(),
                    kv_namespaces: w.kv_namespaces.clone(),
                },
            });
            ready.push(*number);
        }
        states.push(ObjectReport {
            kind: ReportedKind::Worker,
            name: id,
            state: if problems.is_empty() {
                ObjectState::Applied
            } else {
                ObjectState::Refused
            },
            version: o.version,
            detail: Some(if problems.is_empty() {
                format!("fetched versions {ready:?}")
            } else {
                format!("fetched versions {ready:?}; {}", problems.join("; "))
            }),
        });
    }
    (out, states)
}

/// Adds each worker to its zone.
pub fn add_to_zones(zones: &mut [ZoneSection], workers: &[ZoneWorker]) {
    for w in workers {
        if let Some(z) = zones.iter_mut().find(|z| z.name == w.zone) {
            z.workers.push(w.section.clone());
        }
    }
}

/// A worker's secret opened with the PoP's key.
fn open_secret(
    script: &str,
    name: &str,
    sealed: &edgenet_protocol::SealedSecret,
    pop: &str,
    key: &edgenet_certs::to_pop::PopKey,
) -> Result<String, String> {
    let context = edgenet_protocol::WorkerProvision::seal_context(pop, script, name);
    let plain = crate::tls::open_sealed(sealed.pops.get(pop), key, &context)?;
    String::from_utf8(plain).map_err(|_| "not UTF-8".into())
}

impl NodeApplier {
    /// Of the workers a version wants, those whose components are built here, and for each
    /// route whose new version is still being built (or does not build), what it ran before:
    /// a route switches only to a ready version. Starts the builds; notes them in `states`.
    fn ready_workers(
        &self,
        wanted: Vec<ZoneWorker>,
        states: &mut [ObjectReport],
    ) -> Vec<ZoneWorker> {
        let host = &self.node.core.workers;
        let serving = lock(&self.serving).clone();
        let mut chosen: Vec<ZoneWorker> = Vec::new();
        let mut fallback: Vec<ZoneWorker> = Vec::new();
        let mut notes: HashMap<String, Vec<String>> = HashMap::new();
        for w in wanted {
            let component = w.section.component.clone();
            if host.is_built(&component).unwrap_or(false) {
                chosen.push(w);
                continue;
            }
            let note = match lock(&self.failed).get(&component) {
                Some(why) => format!("version {} does not run here: {why}", w.version),
                None => {
                    self.start_build(&component);
                    format!("version {} is being built", w.version)
                }
            };
            notes.entry(w.script.clone()).or_default().push(note);
            for pattern in &w.section.routes {
                let Some(old) = serving.get(&(w.zone.clone(), pattern.clone())) else {
                    continue;
                };
                match fallback
                    .iter_mut()
                    .find(|f| f.zone == old.zone && f.section.name == old.section.name)
                {
                    Some(f) => f.section.routes.push(pattern.clone()),
                    None => {
                        let mut kept = old.clone();
                        kept.section.routes = vec![pattern.clone()];
                        fallback.push(kept);
                    }
                }
            }
        }
        for f in fallback {
            match chosen
                .iter_mut()
                .find(|c| c.zone == f.zone && c.section.name == f.section.name)
            {
                Some(c) => c.section.routes.extend(f.section.routes),
                None => chosen.push(f),
            }
        }
        for state in states.iter_mut() {
            let mut ready: Vec<u32> = chosen
                .iter()
                .filter(|c| c.script == state.name)
                .map(|c| c.version)
                .collect();
            ready.sort_unstable();
            ready.dedup();
            let fetched = state.detail.clone().unwrap_or_default();
            let rest = fetched.split_once("; ").map(|(_, r)| r.to_string());
            let mut detail = vec![format!("running versions {ready:?}")];
            detail.extend(rest);
            if let Some(n) = notes.get(&state.name) {
                if n.iter().any(|n| n.contains("does not run")) {
                    state.state = ObjectState::Refused;
                }
                detail.extend(n.iter().cloned());
            }
            state.detail = Some(detail.join("; "));
        }
        chosen
    }

    /// Builds `component` on a thread of its own (once at a time), then applies the last
    /// version again, which now switches its routes to it.
    fn start_build(&self, component: &Path) {
        if !lock(&self.building).insert(component.to_path_buf()) {
            return;
        }
        let me = self.me.get().cloned();
        let node = self.node.clone();
        let file = component.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("worker build".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let built = node.core.workers.build(&file);
                let Some(me) = me.and_then(|w| w.upgrade()) else {
                    return;
                };
                lock(&me.building).remove(&file);
                match built {
                    Ok(_) => tracing::info!(component = %file.display(), took = ?started.elapsed(), "worker built: its routes switch to it"),
                    Err(e) => {
                        tracing::warn!(component = %file.display(), error = %e, "a worker does not build: its routes keep what they ran");
                        lock(&me.failed).insert(file, format!("{e:#}"));
                    }
                }
                let last = lock(&me.last).clone();
                if let Some(o) = last {
                    // All of it again (not the purges-only path): the build changes workers.
                    if let Err(e) = me.apply_all(&o) {
                        tracing::warn!(version = o.version, error = %e, "applying again after a worker build");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a worker build");
            lock(&self.building).remove(component);
        }
    }

    /// Hands the node's interconnects the CNIs of this PoP's sites.
    fn set_cnis(&self, o: &Objects) {
        let cnis: std::collections::BTreeMap<String, edgenet_protocol::CniProvision> = o
            .objects
            .cnis_of(&self.pop)
            .map(|(id, c)| (id.to_string(), c.clone()))
            .collect();
        match self.node.interconnect.get() {
            Some(i) => i.set_cnis(cnis),
            None if !cnis.is_empty() => {
                tracing::warn!(cnis = cnis.len(), "the control plane streams CNIs for this PoP, but its config has no [interconnect]: they are not provisioned")
            }
            None => {}
        }
    }

    /// Hands the node's tunnels every account's tunnels and routes.
    fn set_magic(&self, o: &Objects) {
        let magic: Vec<edgenet_protocol::MagicProvision> = o.objects.magic().cloned().collect();
        let cnis: Vec<crate::tunnels::cni::Port> = o
            .objects
            .cnis_of(&self.pop)
            .filter_map(|(id, c)| crate::tunnels::cni::Port::of(id, c))
            .collect();
        match self.node.tunnels.get() {
            Some(t) => t.set_magic(&self.pop, magic, cnis),
            None if !magic.is_empty() => {
                tracing::warn!(accounts = magic.len(), "the control plane streams tunnels, but this PoP's config has no [tunnels]: they are not run")
            }
            None => {}
        }
    }
}

/// Other PoPs' backbone addresses: the first address of each PoP record that has one.
pub fn directory(objects: &Objects) -> PopDirectory {
    objects
        .objects
        .pops()
        .filter_map(|p| Some((p.name.clone(), p.addresses.first()?.parse().ok()?)))
        .collect()
}

impl Applier for NodeApplier {
    fn counters(&self) -> edgenet_protocol::Counters {
        let m = &self.node.core.metrics;
        edgenet_protocol::Counters {
            open_connections: m.open_connections.get().max(0) as u64,
            zones: m
                .zone_totals()
                .into_iter()
                .map(|(zone, t)| {
                    let c = edgenet_protocol::ZoneCounters {
                        requests: t.requests,
                        errors: t.errors,
                        cache_hits: t.cache_hits,
                    };
                    (zone, c)
                })
                .collect(),
        }
    }

    fn links(&self) -> Vec<edgenet_protocol::LinkState> {
        self.node
            .interconnect
            .get()
            .map_or_else(Vec::new, |i| i.links())
    }

    fn tunnels(&self) -> Option<Vec<edgenet_protocol::TunnelState>> {
        self.node.tunnels.get().map(|t| t.states())
    }

    fn magic(
        &self,
    ) -> Option<(
        Vec<edgenet_protocol::PrefixState>,
        Vec<edgenet_protocol::RuleState>,
    )> {
        self.node.tunnels.get().map(|t| t.magic_states())
    }

    fn keys(&self) -> Option<String> {
        Some(base64::engine::general_purpose::STANDARD.encode(self.key.public()))
    }

    fn object_states(&self) -> Vec<ObjectReport> {
        let mut states = lock(&self.certificates).states.clone();
        states.extend(lock(&self.workers).iter().cloned());
        states
    }

    fn links_changed(&self) -> Option<Arc<tokio::sync::Notify>> {
        match (self.node.interconnect.get(), self.node.tunnels.get()) {
            (Some(i), _) => Some(i.changed()),
            (None, Some(t)) => Some(t.changed()),
            (None, None) => None,
        }
    }

    fn synced(&self) {
        let purges = self.node.core.cache.purges;
        if purges.fenced() {
            purges.lift_fence();
            tracing::info!(
                "caught up with the control plane's purges: serving stored objects again"
            );
        }
    }

    fn apply(&self, o: &Objects) -> Result<(), ApplyError> {
        // A version that changed only purges purges, and rebuilds nothing.
        let only_purges = lock(&self.last)
            .as_ref()
            .is_some_and(|last| last.objects.same_but_purges(&o.objects));
        if only_purges {
            self.apply_purges(o);
            *lock(&self.last) = Some(o.clone());
            return Ok(());
        }
        let applied = self.apply_all(o);
        // After the zones, so that a purge for a zone new in this version normalises its URLs
        // by that zone's rules; whether or not the zones applied.
        self.apply_purges(o);
        applied
    }
}

impl NodeApplier {
    /// Applies the purges of `o` not applied yet, each at the control plane's time of it (so
    /// that a late one purges just what was stored before the call).
    pub fn apply_purges(&self, o: &Objects) {
        let mut purged = lock(&self.purged);
        purged.retain(|id| o.objects.purge.contains_key(id));
        let snapshot = self.node.core.snapshot.load();
        for (id, p) in o.objects.purges() {
            if purged.contains(id) {
                continue;
            }
            purged.insert(id.to_string());
            let Some(target) = p.spec.target() else {
                continue;
            };
            let request = match snapshot.config.zones.iter().find(|z| z.name == p.zone) {
                Some(zone) => edgenet_proxy::stages::cache::purge_request(zone, target),
                // A zone not served here has nothing stored under its rules: raw URLs.
                None => Ok(edgenet_proxy::stages::cache::raw_purge_request(target)),
            };
            match request {
                Ok(request) => {
                    let at = std::time::UNIX_EPOCH + Duration::from_micros(p.at_us);
                    self.node.core.cache.purges.purge(&p.zone, &request, at);
                    tracing::info!(%id, zone = %p.zone, ?request, "purge from the control plane");
                }
                Err(e) => tracing::warn!(%id, zone = %p.zone, error = %e, "purge refused"),
            }
        }
    }

    fn apply_all(&self, o: &Objects) -> Result<(), ApplyError> {
        // Revocations take effect even when the version's zones are refused, and interconnects
        // do not depend on the zones.
        self.node
            .admin_keys
            .set_control(o.objects.pop_token_hashes());
        self.set_cnis(o);
        self.set_magic(o);
        self.node
            .core
            .challenges
            .store(Arc::new(Challenges::new(o.objects.challenges())));
        let _one_at_a_time = lock(&self.applying);
        let mut zones = o.objects.zones()?;
        let (wanted, mut states) =
            control_workers(&zones, o, &self.components, &self.pop, &self.key);
        let running = self.ready_workers(wanted, &mut states);
        add_to_zones(&mut zones, &running);
        *lock(&self.workers) = states;
        *lock(&self.last) = Some(o.clone());
        self.node.core.pops.store(Arc::new(directory(o)));
        let certs = lock(&self.certificates).open(o, &self.pop, &self.key);
        self.node
            .apply_control(zones, certs)
            .map_err(ApplyError::Refused)?;
        *lock(&self.serving) = running
            .into_iter()
            .flat_map(|w| {
                w.section
                    .routes
                    .clone()
                    .into_iter()
                    .map(move |p| ((w.zone.clone(), p), w.clone()))
            })
            .collect();
        Ok(())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What the node starts with: the last-known-good objects and the zones and configuration they
/// make with the file, or no zones when there are none or they no longer apply.
fn start_from(
    path: &Path,
    state_file: &Path,
    last: Option<&Objects>,
    workers: impl Fn(&mut Vec<ZoneSection>, &Objects),
) -> anyhow::Result<(Vec<ZoneSection>, edgenet_config::Config)> {
    if let Some(o) = last {
        let loaded = o
            .objects
            .zones()
            .map_err(|e| e.to_string())
            .and_then(|mut z| {
                workers(&mut z, o);
                crate::config::load(path, Some(&z))
                    .map(|c| (z, c))
                    .map_err(|e| e.lines().join("; "))
            });
        match loaded {
            Ok((z, c)) => {
                tracing::info!(version = o.version, zones = z.len(), state = %state_file.display(), "serving the last-known-good configuration until the control plane answers");
                return Ok((z, c));
            }
            Err(e) => {
                tracing::error!(state = %state_file.display(), error = %e, "the last-known-good configuration does not apply; starting without zones")
            }
        }
    }
    let config =
        crate::config::load(path, Some(&[])).map_err(|e| anyhow::anyhow!(e.lines().join("\n")))?;
    Ok((Vec::new(), config))
}

/// Runs a PoP that follows a control plane, until a signal ends it.
pub fn run(f: Following) -> anyhow::Result<()> {
    let Following {
        config: path,
        control,
        name,
        token,
        state,
        upgrade,
    } = f;
    let started = std::time::SystemTime::now();
    let nats = control.starts_with("nats://");
    let token = match (token, nats) {
        (Some(t), _) => t,
        (None, true) => String::new(),
        (None, false) => anyhow::bail!("--control needs a token: --token or EDGENET_TOKEN"),
    };
    let state_file = state.unwrap_or_else(|| {
        path.parent()
            .unwrap_or(Path::new("."))
            .join(format!("{name}.control-state.json"))
    });
    let file_zones = edgenet_config::read_raw(&path)
        .map_err(|e| anyhow::anyhow!(e.lines().join("\n")))?
        .zones;
    if !file_zones.is_empty() {
        tracing::warn!(config = %path.display(), "the file's zones are ignored: zones come from the control plane");
    }
    let last = super::load_state(&state_file);
    let key = Arc::new(super::certificates_key(&state_file, &name)?);
    let components = super::components_dir(&state_file, &name);
    let worker_states = Mutex::new(Vec::new());
    // At start nothing serves yet: what is not built yet is built before the node serves.
    let (zones, config) = start_from(&path, &state_file, last.as_ref(), |z, o| {
        let (workers, states) = control_workers(z, o, &components, &name, &key);
        add_to_zones(z, &workers);
        *lock(&worker_states) = states;
    })?;
    let mut opened = OpenedCertificates::default();
    let control_certs = match &last {
        Some(o) => opened.open(o, &name, &key),
        None => Vec::new(),
    };
    let opts = FollowOptions {
        control,
        token,
        pop: name,
        state_file,
    };
    // The backbone listener needs the PoP's certificate before it starts: get it now if the
    // control plane answers (a PoP without one runs without the backbone, and says so).
    let files = super::backbone_files(&opts.state_file, &opts.pop);
    if config.backbone.is_some() && !nats && !files.cert.exists() {
        let got = runtime().and_then(|rt| {
            let client = super::http_client();
            rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    super::ensure_backbone_certificate(&client, &opts),
                )
                .await
                .map_err(|_| anyhow::anyhow!("the control plane did not answer within 10 s"))?
                .map_err(|e| anyhow::anyhow!(e))
            })
        });
        if let Err(e) = got {
            tracing::error!(error = %e, "no backbone certificate");
        }
    }
    let have = files.key.exists() && files.cert.exists() && files.ca.exists();
    // The edge key-value store's copy: its stream and workers' writes go over HTTP.
    let kv_file = super::kv_file(&opts.state_file, &opts.pop);
    let kv_control = (!nats).then(|| (opts.control.clone(), opts.token.clone()));
    let kv = Arc::new(super::kv::KvReplica::open_either(
        &kv_file,
        config.workers.kv_memory,
        kv_control,
    )?);
    let run = RunOptions {
        control_zones: Some(zones),
        control_certs,
        backbone: have.then_some(files),
        kv: Some(kv.clone()),
        upgrade,
    };
    run_with(path, config, run, move |node| {
        let applier = Arc::new(NodeApplier {
            node,
            pop: opts.pop.clone(),
            key,
            certificates: Mutex::new(opened),
            components,
            workers: worker_states,
            serving: Mutex::new(HashMap::new()),
            building: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
            applying: Mutex::new(()),
            purged: Mutex::new(HashSet::new()),
            me: OnceLock::new(),
        });
        let _ = applier.me.set(Arc::downgrade(&applier));
        // What was stored before this start is not served until the purges made meanwhile
        // are applied: the follower lifts the fence once it has caught up.
        applier.node.core.cache.purges.fence(started);
        if let Some(last) = &last {
            applier.apply_purges(last);
            applier
                .node
                .admin_keys
                .set_control(last.objects.pop_token_hashes());
            applier.set_cnis(last);
            applier
                .node
                .core
                .challenges
                .store(Arc::new(Challenges::new(last.objects.challenges())));
        }
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || match runtime() {
                Ok(rt) if nats => rt.block_on(super::nats::follow(
                    opts.control,
                    opts.pop,
                    opts.state_file,
                    applier,
                    last,
                )),
                Ok(rt) => rt.block_on(async move {
                    tokio::spawn(kv.follow());
                    super::http::follow(opts, applier, last).await
                }),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the control-plane follower")
                }
            })
            .expect("a thread for the control-plane follower");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_takes_each_pops_first_address() {
        let o: Objects = serde_json::from_value(serde_json::json!({"version": 1, "objects": {"pop": {
            "a": {"name": "a", "latitude": 0.0, "longitude": 0.0, "addresses": ["127.0.0.1:9001", "127.0.0.1:9"]},
            "b": {"name": "b", "latitude": 0.0, "longitude": 0.0, "addresses": []},
            "c": {"name": "c", "latitude": 0.0, "longitude": 0.0, "addresses": ["not an address"]},
            "d": {"name": "d", "latitude": 0.0, "longitude": 0.0, "addresses": ["[::1]:9004"], "future": 1}
        }}}))
        .unwrap();
        let d = directory(&o);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d["a"], "127.0.0.1:9001".parse().unwrap());
    }
}
