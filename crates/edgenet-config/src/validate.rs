//! Turning a [`RawConfig`] into a validated [`Config`], collecting every error on the way.
//!
//! Validation checks the certificate files a zone names (an unreadable or invalid certificate
//! is a configuration error naming the file) and resolves origin hostnames, both through the
//! [`Environment`] the caller passes: it does no IO of its own and never writes.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::env::{Environment, System};
use crate::error::{ConfigError, FieldError};
use crate::model::*;
use crate::schema::*;

/// Headers whose framing or routing meaning the proxy owns; header rules may not touch them.
const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Parses TOML text into the raw schema; `origin` names the input in errors.
pub fn parse_toml(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let position = inner
            .span()
            .map(|span| {
                let (line, col) = line_col(text, span.start);
                format!(" (line {line}, column {col})")
            })
            .unwrap_or_default();
        ConfigError::Syntax {
            origin: origin.to_string(),
            path: if path == "." { "<root>".into() } else { path },
            reason: format!("{}{position}", inner.message().trim_end()),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Reads, parses and validates a configuration file on this machine ([`System`]). Relative
/// paths inside it are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    validate_file(&read_raw(path)?, path, &System)
}

/// Reads and parses the file at `path`, without validating it.
pub fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    parse_toml(&text, &origin)
}

/// Validates a configuration read from (or based on) the file at `path`: relative paths are
/// resolved from its directory and errors name it.
pub fn validate_file(
    raw: &RawConfig,
    path: &Path,
    env: &dyn Environment,
) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, base, env).map_err(|errors| ConfigError::Invalid { origin, errors })
}

/// Validates a parsed configuration, with relative paths resolved against `base_dir` and
/// files and names looked up through `env`. Returns every error found, not just the first.
pub fn validate(
    raw: &RawConfig,
    base_dir: &Path,
    env: &dyn Environment,
) -> Result<Config, Vec<FieldError>> {
    let mut v = Validator::new(base_dir, env);
    let config = v.config(raw);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(v.errors)
    }
}

pub(crate) struct Validator<'a> {
    errors: Vec<FieldError>,
    base_dir: &'a Path,
    env: &'a dyn Environment,
}

impl<'a> Validator<'a> {
    /// A validator with no errors yet.
    pub(crate) fn new(base_dir: &'a Path, env: &'a dyn Environment) -> Validator<'a> {
        Validator {
            errors: Vec::new(),
            base_dir,
            env,
        }
    }
}

impl Validator<'_> {
    /// A size field as bytes; records an error (and returns `min`) when it is not a size of at
    /// least `min`.
    fn byte_size(&mut self, path: &str, size: &ByteSize, min: u64) -> usize {
        let shown = match size {
            ByteSize::Bytes(n) => n.to_string(),
            ByteSize::Text(t) => t.clone(),
        };
        match parse_byte_size(size) {
            Ok(n) if n >= min && usize::try_from(n).is_ok() => n as usize,
            Ok(_) => {
                self.err(path, shown, format!("must be at least {min} bytes"));
                min as usize
            }
            Err(reason) => {
                self.err(path, shown, reason);
                min as usize
            }
        }
    }

    fn cache_rules(&mut self, path: &str, raw: &[CacheRuleSection]) -> Vec<CacheRule> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if !r.path.starts_with('/') && !r.path.starts_with('*') {
                self.err(
                    format!("{p}.path"),
                    &r.path,
                    "must start with / or * (\"/static/*\", \"*.css\")",
                );
            }
            let ttl = match (r.ttl_mode, r.edge_ttl) {
                (TtlMode::Respect, None) => None,
                (TtlMode::Respect, Some(_)) => {
                    self.err(
                        format!("{p}.edge_ttl"),
                        "",
                        "is only used with ttl_mode = \"override\" or \"minimum\"",
                    );
                    None
                }
                (mode, Some(t)) if !t.is_zero() => Some((mode, t)),
                (_, _) => {
                    self.err(
                        format!("{p}.edge_ttl"),
                        "",
                        "must be set (and longer than zero) with this ttl_mode",
                    );
                    None
                }
            };
            let needs_params = matches!(r.query, QueryKey::Include | QueryKey::Exclude);
            if needs_params == r.query_params.is_empty() {
                self.err(
                    format!("{p}.query_params"),
                    r.query_params.join(","),
                    "names parameters exactly when query is \"include\" or \"exclude\"",
                );
            }
            let mut key_headers = Vec::new();
            for (j, h) in r.key_headers.iter().enumerate() {
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) => key_headers.push(n),
                    Err(_) => self.err(
                        format!("{p}.key_headers[{j}]"),
                        h,
                        "is not a valid header name",
                    ),
                }
            }
            let mut status_ttl = Vec::new();
            for (code, ttl) in &r.status_ttl {
                let field = format!("{p}.status_ttl.{code}");
                let Some((first, last)) = status_range(code) else {
                    self.err(
                        field,
                        code,
                        "must be a status (\"404\"), a range (\"200-299\") or a class (\"5xx\") between 200 and 599",
                    );
                    continue;
                };
                match humantime::parse_duration(ttl) {
                    Ok(d) => status_ttl.push((first, last, d)),
                    Err(e) => self.err(
                        field,
                        ttl,
                        format!("is not a duration (\"1h\", \"0s\"): {e}"),
                    ),
                }
            }
            status_ttl.sort_by_key(|(first, last, _)| last - first);
            out.push(CacheRule {
                path: r.path.clone(),
                bypass: r.bypass,
                ttl,
                status_ttl,
                query: r.query,
                query_params: r.query_params.clone(),
                key_headers,
                key_cookies: r.key_cookies.clone(),
            });
        }
        out
    }

    pub(crate) fn err(
        &mut self,
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.errors.push(FieldError::new(path, value, reason));
    }

    fn config(&mut self, raw: &RawConfig) -> Config {
        let node = self.node(&raw.node);
        let listeners = self.listeners(&raw.listeners);
        let admin = raw.admin.as_ref().and_then(|a| self.admin(a, &listeners));
        let access_log = match (raw.access_log.output, &raw.access_log.path) {
            (AccessLogOutput::Stdout, _) => AccessLog::Stdout,
            (AccessLogOutput::Off, _) => AccessLog::Off,
            (AccessLogOutput::File, Some(p)) => AccessLog::File(self.resolve(p)),
            (AccessLogOutput::File, None) => {
                self.err(
                    "access_log.path",
                    "",
                    "is required when access_log.output is \"file\"",
                );
                AccessLog::Off
            }
        };
        let limits = Limits {
            max_request_header_bytes: raw.limits.max_request_header_bytes,
            max_connections_per_client: raw.limits.max_connections_per_client,
            pressure_connections: raw.limits.pressure_connections,
            pressure_memory: raw
                .limits
                .pressure_memory
                .as_ref()
                .map(|m| self.byte_size("limits.pressure_memory", m, 1 << 20) as u64),
            abusive_for: raw.limits.abusive_for,
            header_timeout: raw.limits.header_timeout,
            keepalive_timeout: raw.limits.keepalive_timeout,
            body_timeout: raw.limits.body_timeout,
            h2_max_control_frames: raw.limits.h2_max_control_frames,
        };
        for (field, value) in [
            ("limits.header_timeout", limits.header_timeout),
            ("limits.keepalive_timeout", limits.keepalive_timeout),
            ("limits.body_timeout", limits.body_timeout),
        ] {
            if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&value) {
                self.err(
                    field,
                    humantime::format_duration(value).to_string(),
                    "must be between 100ms and 5m",
                );
            }
        }
        if limits.h2_max_control_frames < 10 {
            self.err(
                "limits.h2_max_control_frames",
                limits.h2_max_control_frames.to_string(),
                "must be at least 10 (browsers send a few PING and SETTINGS frames)",
            );
        }
        if !(1024..=1024 * 1024).contains(&limits.max_request_header_bytes) {
            self.err(
                "limits.max_request_header_bytes",
                limits.max_request_header_bytes.to_string(),
                "must be between 1024 and 1048576",
            );
        }
        let cache = CacheSettings {
            memory_bytes: self.byte_size("cache.memory", &raw.cache.memory, 0),
            max_object_bytes: self.byte_size("cache.max_object", &raw.cache.max_object, 1),
            lock_timeout: raw.cache.lock_timeout,
            disk: raw.cache.disk_path.as_ref().map(|p| {
                let budget = self.byte_size("cache.disk", &raw.cache.disk, 1 << 20);
                (self.resolve(p), budget)
            }),
        };
        if cache.lock_timeout.is_zero() || cache.lock_timeout > Duration::from_secs(300) {
            self.err(
                "cache.lock_timeout",
                humantime::format_duration(cache.lock_timeout).to_string(),
                "must be longer than zero and at most 5m",
            );
        }
        let workers = self.worker_runtime(&raw.workers, &node.name);
        let zones = self.zones(&raw.zones, workers.max_memory);
        self.worker_hosts(&raw.zones, &zones);
        let anycast = raw.anycast.as_ref().map(|a| self.anycast(a));
        let interconnect = raw
            .interconnect
            .as_ref()
            .map(|i| self.interconnect(i, raw.anycast.as_ref()));
        let tunnels = raw.tunnels.as_ref().map(|t| self.tunnels(t));
        let backbone = raw
            .backbone
            .as_ref()
            .and_then(|b| self.socket_addr("backbone.listen", &b.listen));
        let has_https = listeners
            .iter()
            .any(|l| l.protocol == ListenerProtocol::Https);
        // Judged on what was written: a zone whose certificate failed to load is already an error.
        if has_https && !raw.certificates_from_control && !raw.zones.iter().any(|z| z.tls.is_some())
        {
            self.err(
                "listeners",
                "",
                "an https listener needs at least one zone with a [zones.tls] certificate",
            );
        }
        Config {
            node,
            listeners,
            admin,
            access_log,
            limits,
            cache,
            zones,
            anycast,
            interconnect,
            tunnels,
            backbone,
            workers,
        }
    }

    fn tunnels(&mut self, raw: &crate::schema::TunnelsSection) -> crate::model::Tunnels {
        let unicast = |v: &mut Validator, path: String, s: &str| match s.parse::<Ipv4Addr>() {
            Ok(a) if !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast() => Some(a),
            _ => {
                v.err(path, s, "must be a unicast IPv4 address");
                None
            }
        };
        let source = unicast(self, "tunnels.source".into(), &raw.source);
        if raw.endpoints.is_empty() {
            self.err(
                "tunnels.endpoints",
                "",
                "needs at least one anycast GRE endpoint",
            );
        }
        let endpoints: Vec<Ipv4Addr> = raw
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| unicast(self, format!("tunnels.endpoints[{i}]"), e))
            .collect();
        if let Some(s) = source.filter(|s| endpoints.contains(s)) {
            self.err(
                "tunnels.source",
                s.to_string(),
                "must be the PoP's own address, not one of the anycast endpoints",
            );
        }
        crate::model::Tunnels {
            source: source.unwrap_or(Ipv4Addr::UNSPECIFIED),
            endpoints,
            mode: raw.mode,
        }
    }

    fn worker_runtime(&mut self, raw: &WorkersSection, node: &str) -> WorkerRuntime {
        let artifact_dir = match &raw.artifact_dir {
            Some(p) => self.resolve(p),
            None => self.env.temp_dir().join(format!("edgenet-workers-{node}")),
        };
        if !(1..=100_000).contains(&raw.instances) {
            self.err(
                "workers.instances",
                raw.instances.to_string(),
                "must be between 1 and 100000",
            );
        }
        WorkerRuntime {
            artifact_dir,
            instances: raw.instances.clamp(1, 100_000),
            max_memory: self.byte_size("workers.max_memory", &raw.max_memory, 1 << 20),
            kv_memory: self.byte_size("workers.kv_memory", &raw.kv_memory, 1 << 20),
        }
    }

    /// A zone's workers and their routes, most specific first.
    fn workers(
        &mut self,
        path: &str,
        raw: &[WorkerSection],
        hostnames: &[HostPattern],
        max_memory: usize,
    ) -> (Vec<Worker>, Vec<WorkerRoute>) {
        let mut names = HashSet::new();
        let mut workers = Vec::new();
        let mut routes = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if !valid_zone_name(&w.name) {
                self.err(
                    format!("{p}.name"),
                    &w.name,
                    "must be 1 to 63 characters of lower-case letters, digits, '-', '_' or '.'",
                );
            } else if !names.insert(w.name.as_str()) {
                self.err(
                    format!("{p}.name"),
                    &w.name,
                    "is used by another worker of the zone",
                );
            }
            let component = self.resolve(&w.component);
            if let Err(reason) = self.env.exists(&component) {
                let shown = component.display().to_string();
                self.err(format!("{p}.component"), shown, reason);
            }
            if w.routes.is_empty() {
                self.err(
                    format!("{p}.routes"),
                    "",
                    "a worker needs at least one route",
                );
            }
            for (j, r) in w.routes.iter().enumerate() {
                match parse_worker_route(r, hostnames) {
                    Ok((host, path, prefix)) => routes.push(WorkerRoute {
                        host,
                        path,
                        prefix,
                        worker: workers.len(),
                    }),
                    Err(reason) => self.err(format!("{p}.routes[{j}]"), r, reason),
                }
            }
            let mut env = Vec::new();
            for (name, value) in &w.env {
                if valid_env_name(name) {
                    env.push((name.clone(), value.clone()));
                } else {
                    let reason = "must be a name without '=' or NUL";
                    self.err(format!("{p}.env.{name}"), name, reason);
                }
            }
            for (name, file) in &w.secrets {
                let field = format!("{p}.secrets.{name}");
                if !valid_env_name(name) {
                    self.err(field, name, "must be a name without '=' or NUL");
                    continue;
                }
                if w.env.contains_key(name) {
                    self.err(field, name, "is also in env");
                    continue;
                }
                let file = self.resolve(file);
                let text = self.env.read(&file, MAX_SECRET_BYTES).and_then(|b| {
                    String::from_utf8(b).map_err(|_| "cannot be read: it is not UTF-8 text".into())
                });
                match text {
                    Ok(text) => {
                        let value = text.strip_suffix('\n').unwrap_or(&text);
                        env.push((name.clone(), value.to_string()));
                    }
                    Err(reason) => self.err(field, file.display().to_string(), reason),
                }
            }
            let l = &w.limits;
            let lp = format!("{p}.limits");
            let memory_bytes = match &l.memory {
                Some(m) => self.byte_size(&format!("{lp}.memory"), m, 1 << 20),
                None => max_memory.min(128 << 20),
            };
            if memory_bytes > max_memory {
                self.err(
                    format!("{lp}.memory"),
                    memory_bytes.to_string(),
                    format!("is more than workers.max_memory ({max_memory} bytes)"),
                );
            }
            for (field, d, max) in [
                ("cpu_time", l.cpu_time, Duration::from_secs(30)),
                ("wall_time", l.wall_time, Duration::from_secs(900)),
            ] {
                if d < Duration::from_millis(1) || d > max {
                    self.err(
                        format!("{lp}.{field}"),
                        humantime::format_duration(d).to_string(),
                        format!(
                            "must be between 1ms and {}",
                            humantime::format_duration(max)
                        ),
                    );
                }
            }
            if l.subrequests_in_flight == 0 || l.subrequests_in_flight > 1000 {
                self.err(
                    format!("{lp}.subrequests_in_flight"),
                    l.subrequests_in_flight.to_string(),
                    "must be between 1 and 1000",
                );
            }
            for (name, id) in &w.kv_namespaces {
                let ok =
                    |s: &str| !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control);
                if !ok(name) {
                    let reason = "must be 1 to 64 characters without control characters";
                    self.err(format!("{p}.kv_namespaces"), name, reason);
                } else if !ok(id) {
                    let reason = "must be a namespace id (1 to 64 characters)";
                    self.err(format!("{p}.kv_namespaces.{name}"), id, reason);
                }
            }
            workers.push(Worker {
                name: w.name.clone(),
                component,
                env,
                kv_namespaces: w.kv_namespaces.clone(),
                allowed_hosts: w
                    .allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                limits: WorkerLimits {
                    cpu_time: l.cpu_time,
                    memory_bytes,
                    wall_time: l.wall_time,
                    subrequests: l.subrequests,
                    subrequests_in_flight: l.subrequests_in_flight,
                    request_body_bytes: self.byte_size(
                        &format!("{lp}.request_body"),
                        &l.request_body,
                        0,
                    ),
                    response_body_bytes: self.byte_size(
                        &format!("{lp}.response_body"),
                        &l.response_body,
                        0,
                    ),
                },
            });
        }
        // Most specific first: an exact host, then a wildcard, then any host; then the longer
        // path; then an exact path before a prefix. Ties keep file order.
        routes.sort_by_key(|r| {
            let host = match r.host {
                Some(HostPattern::Exact(_)) => 0,
                Some(HostPattern::Wildcard(_)) => 1,
                None => 2,
            };
            (host, std::cmp::Reverse(r.path.len()), r.prefix)
        });
        (workers, routes)
    }

    /// Every host a worker may send requests to must be served here: its requests go through
    /// this node's own cache and origins.
    fn worker_hosts(&mut self, raw: &[ZoneSection], zones: &[Zone]) {
        for (i, z) in raw.iter().enumerate() {
            for (j, w) in z.workers.iter().enumerate() {
                for (k, h) in w.allowed_hosts.iter().enumerate() {
                    let host = h.to_ascii_lowercase();
                    let served = zones
                        .iter()
                        .flat_map(|z| &z.hostnames)
                        .any(|p| p.matches(&host));
                    if !served {
                        self.err(
                            format!("zones[{i}].workers[{j}].allowed_hosts[{k}]"),
                            h,
                            "is not served by any zone of this node (a worker's requests go \
                             through the node's own cache and origins)",
                        );
                    }
                }
            }
        }
    }

    /// A rule id: 1 to 64 letters, digits, '-', '_' or '.', unique among `ids`.
    fn rule_id(&mut self, path: &str, id: &str, ids: &mut HashSet<String>) {
        let well_formed = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !well_formed {
            self.err(path, id, "must be 1 to 64 letters, digits, '-', '_' or '.'");
        } else if !ids.insert(id.to_string()) {
            self.err(path, id, "is used by another rule of the zone");
        }
    }

    fn waf(&mut self, path: &str, raw: &ZoneWafSection) -> Vec<WafRule> {
        let mut out = self.waf_rules(&format!("{path}.rules"), &raw.rules);
        let m = &raw.managed;
        let p = format!("{path}.managed");
        for (i, id) in m.disabled.iter().enumerate() {
            if edgenet_rules::managed::get(id).is_none() {
                self.err(
                    format!("{p}.disabled[{i}]"),
                    id,
                    "is not the id of a managed rule",
                );
            }
        }
        let action = m.action.unwrap_or(WafAction::Block);
        if !matches!(action, WafAction::Block | WafAction::Log) {
            self.err(
                format!("{p}.action"),
                format!("{action:?}").to_lowercase(),
                "must be block or log",
            );
        }
        let status = m.status.unwrap_or(403);
        if !(400..=599).contains(&status) {
            self.err(
                format!("{p}.status"),
                status.to_string(),
                "must be a 4xx or 5xx status",
            );
        }
        if m.enabled {
            for (rule, expression) in edgenet_rules::managed::compiled() {
                if !m.disabled.iter().any(|d| d == rule.id) {
                    out.push(WafRule {
                        id: rule.id.to_string(),
                        expression: expression.clone(),
                        action,
                        status,
                        body: format!("Blocked by rule {}\n", rule.id),
                    });
                }
            }
        }
        out
    }

    fn waf_rules(&mut self, path: &str, raw: &[WafRuleSection]) -> Vec<WafRule> {
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            self.rule_id(&format!("{p}.id"), &r.id, &mut ids);
            if r.id.starts_with("edgenet-") {
                self.err(
                    format!("{p}.id"),
                    &r.id,
                    "the prefix edgenet- is reserved for managed rules",
                );
            }
            let status = r.status.unwrap_or(403);
            if !(400..=599).contains(&status) {
                self.err(
                    format!("{p}.status"),
                    status.to_string(),
                    "must be a 4xx or 5xx status",
                );
            }
            if (r.status.is_some() || r.body.is_some()) && r.action != WafAction::Block {
                self.err(
                    format!("{p}.action"),
                    format!("{:?}", r.action).to_lowercase(),
                    "only block takes a status or body",
                );
            }
            match edgenet_rules::expr::Expression::compile(&r.expression) {
                Ok(e) if r.enabled => out.push(WafRule {
                    id: r.id.clone(),
                    expression: std::sync::Arc::new(e),
                    action: r.action,
                    status,
                    body: r
                        .body
                        .clone()
                        .unwrap_or_else(|| format!("Blocked by rule {}\n", r.id)),
                }),
                Ok(_) => {}
                Err(e) => self.err(format!("{p}.expression"), &r.expression, e.to_string()),
            }
        }
        out
    }

    fn url_normalization(&mut self, path: &str, raw: &UrlNormalizationSection) -> UrlNormalization {
        if raw.to_origin && !raw.incoming {
            self.err(
                format!("{path}.to_origin"),
                "true",
                "needs incoming = true: only a normalised URL can be sent normalised",
            );
        }
        UrlNormalization {
            incoming: raw.incoming.then_some(raw.kind),
            to_origin: raw.to_origin && raw.incoming,
        }
    }

    fn ddos(&mut self, path: &str, raw: &DdosSection) -> Option<Ddos> {
        if !(1.5..=100.0).contains(&raw.sensitivity) {
            self.err(
                format!("{path}.sensitivity"),
                raw.sensitivity.to_string(),
                "must be between 1.5 and 100",
            );
        }
        if !(1.0..=10_000_000.0).contains(&raw.floor_rps) {
            self.err(
                format!("{path}.floor_rps"),
                raw.floor_rps.to_string(),
                "must be between 1 and 10000000",
            );
        }
        if raw.mitigation < Duration::from_secs(1) || raw.mitigation > Duration::from_secs(86400) {
            self.err(
                format!("{path}.mitigation"),
                humantime::format_duration(raw.mitigation).to_string(),
                "must be between 1s and 1d",
            );
        }
        raw.enabled.then_some(Ddos {
            sensitivity: raw.sensitivity,
            floor_rps: raw.floor_rps,
            mitigation: raw.mitigation,
        })
    }

    fn rate_limits(&mut self, path: &str, raw: &[RateLimitSection]) -> Vec<RateLimit> {
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            self.rule_id(&format!("{p}.id"), &r.id, &mut ids);
            let mut characteristics = Vec::new();
            for (j, c) in r.characteristics.iter().enumerate() {
                let parsed = match c.as_str() {
                    "ip.src" => Some(Characteristic::IpSrc),
                    "http.host" => Some(Characteristic::Host),
                    "http.request.uri.path" => Some(Characteristic::Path),
                    _ => match c.split_once(':') {
                        Some(("header", n)) if HeaderName::from_bytes(n.as_bytes()).is_ok() => {
                            Some(Characteristic::Header(n.to_ascii_lowercase()))
                        }
                        Some(("cookie", n)) if !n.is_empty() => {
                            Some(Characteristic::Cookie(n.to_string()))
                        }
                        _ => None,
                    },
                };
                match parsed {
                    Some(c) => characteristics.push(c),
                    None => self.err(
                        format!("{p}.characteristics[{j}]"),
                        c,
                        "must be ip.src, http.host, http.request.uri.path, header:NAME or cookie:NAME",
                    ),
                }
            }
            if r.characteristics.is_empty() {
                self.err(
                    format!("{p}.characteristics"),
                    "",
                    "at least one is required",
                );
            }
            if r.period < Duration::from_secs(1) || r.period > Duration::from_secs(3600) {
                self.err(
                    format!("{p}.period"),
                    humantime::format_duration(r.period).to_string(),
                    "must be between 1s and 1h",
                );
            }
            if r.requests_per_period == 0 {
                self.err(
                    format!("{p}.requests_per_period"),
                    "0",
                    "must be at least 1",
                );
            }
            let timeout = r.mitigation_timeout.unwrap_or(r.period);
            if timeout > Duration::from_secs(86400) {
                self.err(
                    format!("{p}.mitigation_timeout"),
                    humantime::format_duration(timeout).to_string(),
                    "must be at most 1d",
                );
            }
            match edgenet_rules::expr::Expression::compile(&r.expression) {
                Ok(e) => out.push(RateLimit {
                    id: r.id.clone(),
                    expression: std::sync::Arc::new(e),
                    characteristics,
                    period: r.period,
                    requests: r.requests_per_period,
                    action: r.action,
                    mitigation_timeout: timeout,
                }),
                Err(e) => self.err(format!("{p}.expression"), &r.expression, e.to_string()),
            }
        }
        out
    }

    fn tiered_cache(&mut self, path: &str, raw: &TieredCacheSection) -> Vec<String> {
        match raw {
            TieredCacheSection::Mode(m) if m == "off" => Vec::new(),
            TieredCacheSection::Mode(m) if m == "smart" => Vec::new(),
            TieredCacheSection::Mode(m) => {
                self.err(path, m, "must be \"off\", \"smart\" or a list of PoP names");
                Vec::new()
            }
            TieredCacheSection::Upper(names) => {
                if names.is_empty() {
                    self.err(path, "[]", "names no PoP (use \"off\")");
                }
                for (j, n) in names.iter().enumerate() {
                    if n.is_empty()
                        || !n
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        self.err(format!("{path}[{j}]"), n, "is not a PoP name");
                    }
                }
                names.clone()
            }
        }
    }

    fn node(&mut self, raw: &NodeSection) -> NodeSettings {
        if raw.name.is_empty()
            || raw.name.len() > 63
            || !raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            self.err(
                "node.name",
                &raw.name,
                "must be 1 to 63 characters of letters, digits, '-', '_' or '.'",
            );
        }
        let threads = match raw.threads {
            Some(0) => {
                self.err("node.threads", "0", "must be at least 1");
                1
            }
            Some(n) if n > 1024 => {
                self.err("node.threads", n.to_string(), "must be at most 1024");
                1
            }
            Some(n) => n,
            None => self.env.cpus(),
        };
        if raw.drain_timeout > Duration::from_secs(3600) {
            self.err(
                "node.drain_timeout",
                humantime::format_duration(raw.drain_timeout).to_string(),
                "must be at most 1h",
            );
        }
        NodeSettings {
            name: raw.name.clone(),
            threads,
            drain_timeout: raw.drain_timeout,
        }
    }

    fn listeners(&mut self, raw: &[ListenerSection]) -> Vec<Listener> {
        if raw.is_empty() {
            self.err("listeners", "", "at least one listener is required");
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let path = format!("listeners[{i}].address");
            let Some(address) = self.socket_addr(&path, &l.address) else {
                continue;
            };
            if !seen.insert(address) {
                self.err(path, &l.address, "is listed twice");
                continue;
            }
            out.push(Listener {
                address,
                protocol: l.protocol,
                h2c: l.h2c && l.protocol == ListenerProtocol::Http,
            });
        }
        out
    }

    fn admin(&mut self, a: &AdminSection, listeners: &[Listener]) -> Option<Admin> {
        let address = self.socket_addr("admin.address", &a.address)?;
        if listeners.iter().any(|l| l.address == address) {
            self.err(
                "admin.address",
                &a.address,
                "is also a client listener; the admin listener needs its own address",
            );
        }
        if a.auth == AdminAuth::None && !address.ip().is_loopback() && !a.insecure_public {
            self.err(
                "admin.auth",
                "none",
                format!(
                    "on {address}, which is not a loopback address, lets anyone who reaches it \
                     purge caches and withdraw the PoP's routes: use auth = \"token\" (with \
                     admin.token_file or the control plane's pop-admin tokens), bind a loopback \
                     address, use admin.socket, or set admin.insecure_public = true to accept it"
                ),
            );
        }
        if a.auth == AdminAuth::None && a.token_file.is_some() {
            self.err(
                "admin.token_file",
                a.token_file.as_deref().unwrap_or_default(),
                "is set but auth = \"none\" would never ask for it",
            );
        }
        let path = |p: &Option<String>| p.as_ref().map(|p| self.resolve(Path::new(p)));
        Some(Admin {
            address,
            socket: path(&a.socket),
            token_file: path(&a.token_file),
            auth: a.auth,
        })
    }

    pub(crate) fn socket_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    value,
                    "is not a socket address (IP:port, [IPv6]:port)",
                );
                None
            }
        }
    }

    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn zones(&mut self, raw: &[ZoneSection], max_worker_memory: usize) -> Vec<Zone> {
        let mut names: HashSet<&str> = HashSet::new();
        // Which zone claimed each hostname pattern first, to report conflicts with both names.
        let mut owners: HashMap<HostPattern, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, z) in raw.iter().enumerate() {
            let p = format!("zones[{i}]");
            if !valid_zone_name(&z.name) {
                self.err(
                    format!("{p}.name"),
                    &z.name,
                    "must be 1 to 63 characters of lower-case letters, digits, '-', '_' or '.'",
                );
            } else if !names.insert(&z.name) {
                self.err(format!("{p}.name"), &z.name, "is used by another zone");
            }
            let mut hostnames = Vec::new();
            if z.hostnames.is_empty() {
                self.err(
                    format!("{p}.hostnames"),
                    "",
                    "a zone needs at least one hostname",
                );
            }
            for (j, h) in z.hostnames.iter().enumerate() {
                let hp = format!("{p}.hostnames[{j}]");
                match parse_host_pattern(h) {
                    Ok(pattern) => {
                        if let Some(owner) = owners.get(&pattern) {
                            let reason = format!("is already served by zone {owner:?}");
                            self.err(hp, h, reason);
                        } else {
                            owners.insert(pattern.clone(), z.name.clone());
                            hostnames.push(pattern);
                        }
                    }
                    Err(reason) => self.err(hp, h, reason),
                }
            }
            let tls = z
                .tls
                .as_ref()
                .and_then(|t| self.zone_tls(&format!("{p}.tls"), t));
            let host_header = z.host_header.as_ref().and_then(|h| {
                let ok = parse_host_pattern(h)
                    .ok()
                    .filter(|p| matches!(p, HostPattern::Exact(_)))
                    .is_some()
                    || h.parse::<http::uri::Authority>()
                        .is_ok_and(|a| a.as_str() == h);
                if ok {
                    HeaderValue::from_str(h).ok()
                } else {
                    self.err(
                        format!("{p}.host_header"),
                        h,
                        "is not a hostname or host:port",
                    );
                    None
                }
            });
            let first_exact = hostnames.iter().find_map(|h| match h {
                HostPattern::Exact(name) => Some(name.clone()),
                HostPattern::Wildcard(_) => None,
            });
            let origins = self.origin_pool(&format!("{p}.origins"), &z.origins, first_exact);
            let (workers, worker_routes) = self.workers(
                &format!("{p}.workers"),
                &z.workers,
                &hostnames,
                max_worker_memory,
            );
            let request_headers =
                self.header_rules(&format!("{p}.request_headers"), &z.request_headers);
            let response_headers =
                self.header_rules(&format!("{p}.response_headers"), &z.response_headers);
            out.push(Zone {
                name: z.name.clone(),
                hostnames,
                tls,
                host_header,
                origins,
                request_headers,
                response_headers,
                cache: ZoneCache {
                    enabled: z.cache.enabled,
                    cache_set_cookie: z.cache.cache_set_cookie,
                    honor_request_no_cache: z.cache.honor_request_no_cache,
                    rules: self.cache_rules(&format!("zones[{i}].cache.rules"), &z.cache.rules),
                },
                upper_tiers: self.tiered_cache(&format!("{p}.tiered_cache"), &z.tiered_cache),
                smart_tier: matches!(&z.tiered_cache, TieredCacheSection::Mode(m) if m == "smart"),
                waf: self.waf(&format!("{p}.waf"), &z.waf),
                rate_limits: self.rate_limits(&format!("{p}.rate_limits"), &z.rate_limits),
                ddos: self.ddos(&format!("{p}.ddos"), &z.ddos),
                url_normalization: self
                    .url_normalization(&format!("{p}.url_normalization"), &z.url_normalization),
                workers,
                worker_routes,
            });
        }
        out
    }

    fn zone_tls(&mut self, p: &str, t: &ZoneTlsSection) -> Option<ZoneTls> {
        let cert_path = self.resolve(&t.cert);
        let key_path = self.resolve(&t.key);
        let missing = |p: &Path| self.env.exists(p).is_err();
        if t.generate_if_missing && missing(&cert_path) && missing(&key_path) {
            return Some(ZoneTls {
                cert_path,
                key_path,
                material: CertMaterial::Generate,
            });
        }
        let before = self.errors.len();
        let chain = match self.certs(&cert_path) {
            Ok(c) => Some(c),
            Err(reason) => {
                self.err(format!("{p}.cert"), cert_path.display().to_string(), reason);
                None
            }
        };
        let key = match self
            .env
            .read(&key_path, MAX_PEM_BYTES)
            .and_then(|b| parse_key(&b))
        {
            Ok(k) => Some(k),
            Err(reason) => {
                self.err(format!("{p}.key"), key_path.display().to_string(), reason);
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        let (chain, key) = (chain?, key?);
        if let Err(reason) = check_pair(&chain, &key) {
            self.err(format!("{p}.key"), key_path.display().to_string(), reason);
            return None;
        }
        Some(ZoneTls {
            cert_path,
            key_path,
            material: CertMaterial::Loaded { chain, key },
        })
    }

    fn origin_pool(
        &mut self,
        p: &str,
        raw: &OriginPoolSection,
        first_exact: Option<String>,
    ) -> OriginPool {
        if raw.servers.is_empty() {
            self.err(
                format!("{p}.servers"),
                "",
                "at least one origin server is required",
            );
        }
        let mut servers = Vec::new();
        for (i, s) in raw.servers.iter().enumerate() {
            let sp = format!("{p}.servers[{i}]");
            if !(1..=1000).contains(&s.weight) {
                self.err(
                    format!("{sp}.weight"),
                    s.weight.to_string(),
                    "must be between 1 and 1000",
                );
            }
            match self.resolve_origin(&s.address) {
                Ok(address) => servers.push(OriginServer {
                    name: s.address.clone(),
                    address,
                    weight: s.weight.clamp(1, 1000),
                }),
                Err(reason) => self.err(format!("{sp}.address"), &s.address, reason),
            }
        }
        self.positive(&format!("{p}.connect_timeout"), raw.connect_timeout);
        self.positive(&format!("{p}.read_timeout"), raw.read_timeout);
        if raw.retries > 16 {
            self.err(
                format!("{p}.retries"),
                raw.retries.to_string(),
                "must be at most 16",
            );
        }
        let tls = raw.tls.as_ref().map(|t| {
            if let Some(sni) = &t.sni {
                if !matches!(parse_host_pattern(sni), Ok(HostPattern::Exact(_))) {
                    self.err(format!("{p}.tls.sni"), sni, "is not a hostname");
                }
            }
            let ca = t.ca.as_ref().map(|c| self.resolve(c));
            if let Some(ca) = &ca {
                if let Err(reason) = self.certs(ca) {
                    self.err(format!("{p}.tls.ca"), ca.display().to_string(), reason);
                }
            }
            OriginTls {
                sni: t.sni.clone(),
                verify: t.verify,
                ca,
            }
        });
        let health_check = raw.health_check.as_ref().map(|h| {
            let hp = format!("{p}.health_check");
            if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
                self.err(
                    format!("{hp}.path"),
                    &h.path,
                    "must be an absolute path like /health",
                );
            }
            if h.interval < Duration::from_millis(100) {
                self.err(
                    format!("{hp}.interval"),
                    humantime::format_duration(h.interval).to_string(),
                    "must be at least 100ms",
                );
            }
            self.positive(&format!("{hp}.timeout"), h.timeout);
            for (name, v) in [
                ("healthy_threshold", h.healthy_threshold),
                ("unhealthy_threshold", h.unhealthy_threshold),
            ] {
                if !(1..=100).contains(&v) {
                    self.err(
                        format!("{hp}.{name}"),
                        v.to_string(),
                        "must be between 1 and 100",
                    );
                }
            }
            let host = match (&h.host, &first_exact) {
                (Some(host), _) => {
                    if HeaderValue::from_str(host).is_err() {
                        self.err(format!("{hp}.host"), host, "is not a valid Host value");
                    }
                    host.clone()
                }
                (None, Some(exact)) => exact.clone(),
                (None, None) => "localhost".to_string(),
            };
            HealthCheck {
                path: h.path.clone(),
                host,
                interval: h.interval,
                timeout: h.timeout,
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
            }
        });
        if raw.passive.max_failures > 0 {
            self.positive(&format!("{p}.passive.eject_for"), raw.passive.eject_for);
        }
        OriginPool {
            servers,
            tls,
            connect_timeout: raw.connect_timeout,
            read_timeout: raw.read_timeout,
            retries: raw.retries,
            health_check,
            passive: Passive {
                max_failures: raw.passive.max_failures,
                eject_for: raw.passive.eject_for,
            },
        }
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.err(path, "0s", "must be longer than zero");
        }
    }

    fn header_rules(&mut self, p: &str, raw: &[HeaderRuleSection]) -> Vec<HeaderRule> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let rp = format!("{p}[{i}]");
            let name = match HeaderName::from_bytes(r.name.as_bytes()) {
                Ok(n) if MANAGED_HEADERS.contains(&n.as_str()) => {
                    self.err(
                        format!("{rp}.name"),
                        &r.name,
                        "is managed by the proxy and cannot be changed by a header rule",
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(format!("{rp}.name"), &r.name, "is not a valid header name");
                    None
                }
            };
            let value = match (r.action, &r.value) {
                (HeaderAction::Remove, Some(v)) => {
                    self.err(
                        format!("{rp}.value"),
                        v,
                        "is not allowed with action \"remove\"",
                    );
                    None
                }
                (HeaderAction::Remove, None) => None,
                (_, None) => {
                    self.err(
                        format!("{rp}.value"),
                        "",
                        "is required with actions \"set\" and \"add\"",
                    );
                    None
                }
                (_, Some(v)) => match HeaderValue::from_str(v) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.err(
                            format!("{rp}.value"),
                            v,
                            "is not a valid header value (control characters are not allowed)",
                        );
                        None
                    }
                },
            };
            if let Some(name) = name {
                if r.action == HeaderAction::Remove || value.is_some() {
                    out.push(HeaderRule {
                        action: r.action,
                        name,
                        value,
                    });
                }
            }
        }
        out
    }
}

/// Parses a size: bytes, or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
pub fn parse_byte_size(size: &ByteSize) -> Result<u64, String> {
    let text = match size {
        ByteSize::Bytes(n) => return Ok(*n),
        ByteSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "is not a size like 256MiB or 1GiB".to_string())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "TB" => 1000 * 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err("has an unknown unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)".into()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "is too large".to_string())
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// A worker route: `host/path` or `/path`, the host covered by one of the zone's
/// `hostnames`, the path starting with `/` with `*` only at its end.
fn parse_worker_route(
    raw: &str,
    hostnames: &[HostPattern],
) -> Result<(Option<HostPattern>, String, bool), String> {
    let (host, path) = match raw.find('/') {
        Some(0) => (None, raw),
        Some(i) => (Some(&raw[..i]), &raw[i..]),
        None => return Err("must be host/path or /path (\"example.com/api/*\")".into()),
    };
    let (path, prefix) = match path.strip_suffix('*') {
        Some(p) => (p, true),
        None => (path, false),
    };
    if path.contains('*') {
        return Err("may only have a * at the end of its path".into());
    }
    let host = match host {
        None => None,
        Some(h) => {
            let pattern = parse_host_pattern(h)?;
            let covered = hostnames.iter().any(|z| match (z, &pattern) {
                (_, HostPattern::Exact(b)) => z.matches(b),
                (HostPattern::Wildcard(s), HostPattern::Wildcard(b)) => b.ends_with(s.as_str()),
                (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
            });
            if !covered {
                return Err(format!("host {h:?} is not one of the zone's hostnames"));
            }
            Some(pattern)
        }
    };
    Ok((host, path.to_string(), prefix))
}

fn valid_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

/// Parses a zone hostname: an exact DNS name or IP literal, or `*.` followed by a DNS name.
pub fn parse_host_pattern(raw: &str) -> Result<HostPattern, String> {
    let lower = raw.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err("may contain '*' only as the whole leftmost label".into());
        }
        check_dns_name(suffix)?;
        return Ok(HostPattern::Wildcard(format!(".{suffix}")));
    }
    if lower.contains('*') {
        return Err("may contain '*' only as the whole leftmost label (\"*.example.com\")".into());
    }
    if lower.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(HostPattern::Exact(lower));
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(HostPattern::Exact(lower));
        }
    }
    check_dns_name(&lower)?;
    Ok(HostPattern::Exact(lower))
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("is not a hostname: must be 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("is not a hostname: every label must be 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(
                "is not a hostname: labels are letters, digits and inner hyphens".to_string(),
            );
        }
    }
    Ok(())
}

impl Validator<'_> {
    /// An origin address: `IP:port`, or `host:port` resolved through the environment.
    pub(crate) fn resolve_origin(&self, address: &str) -> Result<SocketAddr, String> {
        if let Ok(a) = address.parse::<SocketAddr>() {
            return Ok(a);
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err("is not host:port".into());
        };
        let Ok(port) = port.parse::<u16>() else {
            return Err(format!("has an invalid port {port:?}"));
        };
        check_dns_name(host)?;
        self.env
            .resolve(host, port)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{host:?} resolved to no address"))
    }

    /// The certificate chain in the PEM file at `path`.
    fn certs(&self, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        parse_certs(&self.env.read(path, MAX_PEM_BYTES)?)
    }
}

/// The largest PEM file read: far above any real chain, and a path like `/dev/zero` cannot
/// exhaust memory.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The largest secret file read for a worker.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads a PEM certificate chain from this machine; the error says what is wrong with the file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    parse_certs(&System.read(path, MAX_PEM_BYTES)?)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1) from this machine.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    parse_key(&System.read(path, MAX_PEM_BYTES)?)
}

/// The certificates of a PEM file's contents, each checked to be X.509.
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    let certs = certs.map_err(|e| format!("is not a valid PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("contains no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = rustls::server::ParsedCertificate::try_from(c) {
            return Err(format!(
                "certificate #{} is not a valid X.509 certificate: {e}",
                i + 1
            ));
        }
    }
    Ok(certs)
}

/// The private key of a PEM file's contents (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| format!("contains no usable PEM private key: {e}"))
}

fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("is not a supported private key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain.to_vec(), signing);
    certified
        .keys_match()
        .map_err(|e| format!("does not match the certificate: {e}"))
}

/// A `status_ttl` key: `"404"`, `"200-299"` or `"5xx"`, as the statuses it covers (final
/// statuses only: 200 to 599).
fn status_range(code: &str) -> Option<(u16, u16)> {
    let code = code.trim();
    let (first, last) = if let Some(class) = code.strip_suffix("xx") {
        let c: u16 = class.parse().ok().filter(|c| (1..=9).contains(c))?;
        (c * 100, c * 100 + 99)
    } else if let Some((a, b)) = code.split_once('-') {
        (a.trim().parse().ok()?, b.trim().parse().ok()?)
    } else {
        let n = code.parse().ok()?;
        (n, n)
    };
    (200 <= first && first <= last && last <= 599).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::fake::Fake;

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nprotocol = \"http\"\n";

    fn check(text: &str, env: &Fake) -> Result<Config, Vec<FieldError>> {
        let raw = parse_toml(&format!("{BASE}{text}"), "test").unwrap();
        validate(&raw, Path::new("/etc/edgenet"), env)
    }

    fn zone(origin: &str, extra: &str) -> String {
        format!(
            "[[zones]]\nname = \"z\"\nhostnames = [\"z.test\"]\n\
             [[zones.origins.servers]]\naddress = \"{origin}\"\n{extra}"
        )
    }

    #[test]
    fn status_ttls_are_statuses_ranges_or_classes_with_durations() {
        let env = Fake::default();
        let rule = |ttl: &str| {
            zone(
                "127.0.0.1:9000",
                &format!("[[zones.cache.rules]]\npath = \"/*\"\nstatus_ttl = {{ {ttl} }}\n"),
            )
        };
        let c = check(
            &rule(r#""404" = "1m", "200-299" = "1h", "5xx" = "0s""#),
            &env,
        )
        .unwrap();
        let r = &c.zones[0].cache.rules[0];
        assert_eq!(
            r.status_ttl(404),
            Some(Duration::from_secs(60)),
            "the status beats the range"
        );
        assert_eq!(r.status_ttl(204), Some(Duration::from_secs(3600)));
        assert_eq!(r.status_ttl(503), Some(Duration::ZERO));
        assert_eq!(r.status_ttl(301), None);
        for (bad, field) in [
            (r#""1xx" = "1m""#, "zones[0].cache.rules[0].status_ttl.1xx"),
            (
                r#""299-200" = "1m""#,
                "zones[0].cache.rules[0].status_ttl.299-200",
            ),
            (r#""abc" = "1m""#, "zones[0].cache.rules[0].status_ttl.abc"),
            (
                r#""404" = "soon""#,
                "zones[0].cache.rules[0].status_ttl.404",
            ),
        ] {
            let errors = check(&rule(bad), &env).unwrap_err();
            assert_eq!(errors[0].path, field, "{bad}: {errors:?}");
        }
    }

    #[test]
    fn tunnels_name_the_pops_own_address_and_its_endpoints() {
        let env = Fake::default();
        let t = check(
            "[tunnels]\nsource = \"198.51.100.1\"\nendpoints = [\"192.0.2.100\"]\n",
            &env,
        )
        .unwrap()
        .tunnels
        .unwrap();
        assert_eq!(t.source.to_string(), "198.51.100.1");
        assert_eq!(t.mode, crate::schema::TunnelMode::Auto);
        let e = check(
            "[tunnels]\nsource = \"192.0.2.100\"\nendpoints = [\"192.0.2.100\", \"nope\"]\nmode = \"userspace\"\n",
            &env,
        )
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["tunnels.endpoints[1]", "tunnels.source"], "{e:?}");
    }

    #[test]
    fn interconnects_share_the_anycast_speaker_or_name_their_own() {
        let env = Fake::default();
        let anycast = "[anycast]\nlocal_as = 13335\nrouter_id = \"10.0.0.1\"\n\
                       prefixes = [\"192.0.2.0/24\"]\n\
                       [[anycast.peers]]\naddress = \"10.1.0.1\"\nasn = 64600\nimport = []\n";
        let shared = check(&format!("{anycast}[interconnect]\n"), &env)
            .unwrap()
            .interconnect
            .unwrap();
        assert_eq!((shared.local_as, shared.table), (13335, 200));
        assert_eq!(shared.rule_priority, Some(1000));
        assert_eq!(
            shared.router_id,
            "10.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(shared.optics_dir, Path::new("/run/edgenet/optics"));
        let e = check(
            &format!("{anycast}[interconnect]\nlocal_as = 64512\nlisten = [\"0.0.0.0:179\"]\ntable = 254\nrule_priority = 40000\n"),
            &env,
        )
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "interconnect.local_as",
                "interconnect.listen",
                "interconnect.table",
                "interconnect.rule_priority"
            ],
            "{e:?}"
        );
        let e = check("[interconnect]\n", &env).unwrap_err();
        assert_eq!(e[0].path, "interconnect.local_as");
        assert!(e[0].reason.contains("without [anycast]"), "{}", e[0].reason);
        assert_eq!(e[1].path, "interconnect.router_id");
        let own = check(
            "[interconnect]\nlocal_as = 13335\nrouter_id = \"10.0.0.2\"\nlisten = [\"0.0.0.0:1179\"]\n\
             optics_dir = \"optics\"\nrule_priority = 0\n[interconnect.bfd]\nmin_tx = \"50ms\"\n",
            &env,
        )
        .unwrap()
        .interconnect
        .unwrap();
        assert_eq!(own.listen, ["0.0.0.0:1179".parse().unwrap()]);
        assert_eq!(own.optics_dir, Path::new("/etc/edgenet/optics"));
        assert_eq!(own.bfd.desired_min_tx, Duration::from_millis(50));
        assert_eq!(own.rule_priority, None, "0: no rule");
    }

    #[test]
    fn an_admin_listener_without_tokens_stays_on_loopback_unless_said_otherwise() {
        let env = Fake::default();
        let admin = |body: &str| check(&format!("[admin]\n{body}\n"), &env);
        let e = admin("address = \"0.0.0.0:9090\"\nauth = \"none\"").unwrap_err();
        assert_eq!(e[0].path, "admin.auth");
        assert!(
            e[0].reason.contains("not a loopback address")
                && e[0].reason.contains("insecure_public"),
            "{}",
            e[0].reason
        );
        let open = admin("address = \"0.0.0.0:9090\"\nauth = \"none\"\ninsecure_public = true");
        assert_eq!(open.unwrap().admin.unwrap().auth, AdminAuth::None);
        assert!(admin("address = \"127.0.0.1:9090\"\nauth = \"none\"").is_ok());
        let token = admin(
            "address = \"0.0.0.0:9090\"\ntoken_file = \"admin-token\"\nsocket = \"/run/a.sock\"",
        )
        .unwrap()
        .admin
        .unwrap();
        assert_eq!(token.auth, AdminAuth::Token, "tokens by default");
        assert_eq!(
            token.token_file.as_deref(),
            Some(Path::new("/etc/edgenet/admin-token")),
            "relative to the file"
        );
        assert_eq!(token.socket.as_deref(), Some(Path::new("/run/a.sock")));
        let e =
            admin("address = \"127.0.0.1:9090\"\nauth = \"none\"\ntoken_file = \"t\"").unwrap_err();
        assert_eq!(e[0].path, "admin.token_file");
    }

    #[test]
    fn names_resolve_through_the_environment() {
        let mut env = Fake::default();
        env.hosts
            .insert("origin.test".into(), vec!["192.0.2.7".parse().unwrap()]);
        let c = check(&zone("origin.test:8000", ""), &env).unwrap();
        let s = &c.zones[0].origins.servers[0];
        assert_eq!(s.address, "192.0.2.7:8000".parse().unwrap());
        assert_eq!(s.name, "origin.test:8000");

        let e = check(&zone("nowhere.test:8000", ""), &env).unwrap_err();
        assert_eq!(e[0].path, "zones[0].origins.servers[0].address");
        assert!(e[0].reason.contains("cannot be resolved"), "{e:?}");
    }

    #[test]
    fn defaults_come_from_the_environment() {
        let c = check(&zone("127.0.0.1:8000", ""), &Fake::default()).unwrap();
        assert_eq!(c.node.threads, 3);
        assert_eq!(
            c.workers.artifact_dir,
            Path::new("/fake-tmp/edgenet-workers-edgenet")
        );
    }

    #[test]
    fn worker_files_are_read_through_the_environment() {
        let mut env = Fake::default();
        env.files
            .insert("/etc/edgenet/w.wasm".into(), b"\0asm".to_vec());
        env.files
            .insert("/etc/edgenet/token".into(), b"s3cret\n".to_vec());
        let worker = "[[zones.workers]]\nname = \"w\"\ncomponent = \"w.wasm\"\nroutes = [\"/*\"]\n\
                      secrets = { TOKEN = \"token\", GONE = \"missing\" }\n";
        let e = check(&zone("127.0.0.1:8000", worker), &env).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "zones[0].workers[0].secrets.GONE");
        assert_eq!(e[0].value, "/etc/edgenet/missing");

        let worker = worker.replace(", GONE = \"missing\"", "");
        let c = check(&zone("127.0.0.1:8000", &worker), &env).unwrap();
        let w = &c.zones[0].workers[0];
        assert_eq!(w.env, [("TOKEN".to_string(), "s3cret".to_string())]);

        let e = check(&zone("127.0.0.1:8000", &worker), &Fake::default()).unwrap_err();
        assert_eq!(e[0].path, "zones[0].workers[0].component");
        assert!(e[0].reason.starts_with("cannot be read"), "{e:?}");
    }

    #[test]
    fn certificates_are_read_through_the_environment() {
        let tls = "[zones.tls]\ncert = \"z.pem\"\nkey = \"z.key\"\n";
        let e = check(&zone("127.0.0.1:8000", tls), &Fake::default()).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["zones[0].tls.cert", "zones[0].tls.key"]);

        let mut env = Fake::default();
        env.files
            .insert("/etc/edgenet/z.pem".into(), b"junk".to_vec());
        env.files
            .insert("/etc/edgenet/z.key".into(), vec![b'k'; 2 << 20]);
        let e = check(&zone("127.0.0.1:8000", tls), &env).unwrap_err();
        assert!(e[0].reason.contains("no PEM certificate"), "{e:?}");
        assert!(e[1].reason.contains("larger than"), "{e:?}");

        let generate = format!("{tls}generate_if_missing = true\n");
        let c = check(&zone("127.0.0.1:8000", &generate), &Fake::default()).unwrap();
        assert!(matches!(
            c.zones[0].tls.as_ref().unwrap().material,
            CertMaterial::Generate
        ));
    }
}
