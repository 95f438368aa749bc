//! Running a PoP: Pingora services for the listeners, the admin listener, health checks and
//! reloads, plus signal handling (SIGHUP reload, SIGTERM drain).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use edgenet_config::{Config, ConfigError, ListenerProtocol, ZoneSection};
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ServerApp};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TcpSocketOptions;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use prometheus::IntGauge;

use crate::access_log::AccessLogger;
use crate::admin::Admin;
use crate::guard::{Guarded, Head};
use crate::health_check::HealthChecker;
use crate::metrics::Metrics;
use crate::proxy::EdgeProxy;
use crate::state::{build_snapshot, Node, SnapshotParts};
use crate::tls::{generate_missing, CertTable, HandshakeCallbacks, PreTls, SniResolver};

/// Loads the configuration at `path`, creating missing self-signed certificates it asks for.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    load_config_with(path, None)
}

/// Loads the configuration at `path` with its zones replaced by `zones` when given (a PoP
/// that follows a control plane takes its zones from there and the rest from its file).
pub fn load_config_with(path: &Path, zones: Option<&[ZoneSection]>) -> Result<Config, ConfigError> {
    let mut raw = edgenet_config::read_raw(path)?;
    if let Some(z) = zones {
        raw.zones = z.to_vec();
    }
    let mut config = edgenet_config::validate_file(&raw, path)?;
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

/// Runs a PoP until SIGTERM (drain, exit 0) or SIGINT (exit at once). Never returns on success.
pub fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    run_with(config_path, config, RunOptions::default(), |_| {})
}

/// How a PoP that follows a control plane starts.
#[derive(Default)]
pub struct RunOptions {
    /// The zones that came from the control plane (kept across SIGHUP reloads of the file).
    pub control_zones: Option<Vec<ZoneSection>>,
    /// The backbone identity, for the `[backbone]` listener and tiered cache.
    pub backbone: Option<crate::backbone::BackboneFiles>,
}

/// [`run`], with what came from a control plane and a hook called with the node once it
/// exists (to start the control-plane follower).
pub fn run_with(
    config_path: PathBuf,
    config: Config,
    options: RunOptions,
    on_start: impl FnOnce(Arc<Node>),
) -> anyhow::Result<()> {
    let RunOptions {
        control_zones,
        backbone,
    } = options;
    let metrics = Metrics::new();
    let log = AccessLogger::start(&config.access_log, metrics.access_log_dropped.clone())?;
    let certs = Arc::new(SniResolver::new(CertTable::new(&config)?));
    let node = Arc::new(Node::new(config.clone(), log, metrics, certs.clone())?);
    *crate::lock(&node.control_zones) = control_zones;
    if let Some(anycast) = &config.anycast {
        let listeners = config.listeners.iter().map(|l| l.address).collect();
        let a = crate::anycast::Anycast::start(anycast, listeners, &node.metrics)?;
        let _ = node.anycast.set(a);
    }

    let mut conf = ServerConf {
        threads: config.node.threads,
        grace_period_seconds: Some(config.node.drain_timeout.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 1024,
        // One current-thread runtime per thread: no task stealing between threads, whose
        // bookkeeping costs more per request than the balance it buys for short proxy requests.
        work_stealing: false,
        ..ServerConf::default()
    };
    // Pingora only uses the upgrade socket on SIGQUIT; keep it per process so two nodes on one
    // machine do not collide.
    conf.upgrade_sock = format!("/tmp/edgenet-upgrade-{}.sock", std::process::id());
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let server_conf = server.configuration.clone();

    // Listeners that share protocol and h2c setting share one service (one runtime).
    let mut groups: Vec<(ListenerProtocol, bool, Vec<String>)> = Vec::new();
    for l in &config.listeners {
        let addr = l.address.to_string();
        match groups
            .iter_mut()
            .find(|g| g.0 == l.protocol && g.1 == l.h2c)
        {
            Some(g) => g.2.push(addr),
            None => groups.push((l.protocol, l.h2c, vec![addr])),
        }
    }
    for (protocol, h2c, addrs) in groups {
        let proxy = |h2c: bool| {
            let mut proxy = pingora_proxy::http_proxy(
                &server_conf,
                EdgeProxy {
                    node: node.clone(),
                    backbone: false,
                    subrequests: false,
                },
            );
            let mut opts = HttpServerOptions::default();
            opts.h2c = h2c;
            proxy.server_options = Some(opts);
            proxy.h2_options = Some(h2_limits(&config));
            Arc::new(proxy)
        };
        // On TLS, ALPN picks the protocol inside the HTTP/1 app; on plain listeners with h2c,
        // `ClientConnections` reads the preface itself and hands the stream to the right app.
        let h2c = (protocol == ListenerProtocol::Http && h2c).then(|| proxy(true));
        let app = ClientConnections {
            http1: proxy(false),
            h2c,
            open: node.metrics.open_connections.clone(),
            node: Some(node.clone()),
        };
        let name = match protocol {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
        };
        let mut service = Service::new(format!("edgenet {name}"), app);
        for addr in &addrs {
            // An IPv6 wildcard listens for IPv6 only (as nginx does), so `0.0.0.0:80` and
            // `[::]:80` can both be configured.
            let mut sock = TcpSocketOptions::default();
            sock.ipv6_only = addr.starts_with('[').then_some(true);
            match protocol {
                ListenerProtocol::Http => service.add_tcp_with_settings(addr, sock),
                ListenerProtocol::Https => {
                    let mut tls = TlsSettings::with_callbacks(Box::new(HandshakeCallbacks {
                        completed: node.metrics.tls_handshakes.clone(),
                    }))?;
                    tls.set_cert_resolver(certs.clone());
                    tls.enable_h2();
                    service.add_tls_with_settings(addr, Some(sock), tls);
                }
            }
        }
        if protocol == ListenerProtocol::Https {
            service.endpoints().set_pre_tls_callback(Arc::new(PreTls {
                started: node.metrics.tls_started.clone(),
                hellos: node.hellos.clone(),
                timeout: {
                    let node = node.clone();
                    Arc::new(move || node.snapshot.load().config.limits.header_timeout)
                },
            }));
        }
        server.add_service(service);
    }
    match (config.backbone, &backbone) {
        (Some(addr), Some(files)) => {
            let _ = node
                .backbone_tls
                .set(crate::backbone::BackboneTls::load(files)?);
            let proxy = pingora_proxy::http_proxy(
                &server_conf,
                EdgeProxy {
                    node: node.clone(),
                    backbone: true,
                    subrequests: false,
                },
            );
            let app = ClientConnections {
                http1: Arc::new(proxy),
                h2c: None,
                open: node.metrics.open_connections.clone(),
                // PoPs on the backbone multiplex over few connections; no per-client cap.
                node: None,
            };
            server.add_service(background_service(
                "backbone probes",
                crate::backbone::Prober { node: node.clone() },
            ));
            let mut service = Service::new("edgenet backbone".to_string(), app);
            let mut sock = TcpSocketOptions::default();
            sock.ipv6_only = addr.is_ipv6().then_some(true);
            service.add_tls_with_settings(
                &addr.to_string(),
                Some(sock),
                crate::backbone::server_tls(files)?,
            );
            server.add_service(service);
        }
        (Some(addr), None) => tracing::error!(
            listen = %addr,
            "backbone.listen is set but there is no backbone certificate (PoPs get one from \
             their control plane): the backbone listener is off"
        ),
        _ => {}
    }
    // Workers' requests come back in here and enter the pipeline at the cache stage.
    {
        let proxy = pingora_proxy::http_proxy(
            &server_conf,
            EdgeProxy {
                node: node.clone(),
                backbone: false,
                subrequests: true,
            },
        );
        let app = ClientConnections {
            http1: Arc::new(proxy),
            h2c: None,
            open: node.metrics.open_connections.clone(),
            node: None,
        };
        let mut service = Service::new("edgenet subrequests".to_string(), app);
        crate::workers::prepare_socket(&node.workers.socket);
        use std::os::unix::fs::PermissionsExt;
        service.add_uds(
            &node.workers.socket.to_string_lossy(),
            Some(std::fs::Permissions::from_mode(0o600)),
        );
        server.add_service(service);
    }
    if let Some(admin) = config.admin {
        let mut service = Service::new(
            "edgenet admin".to_string(),
            HttpServer::new_app(Admin { node: node.clone() }),
        );
        service.add_tcp(&admin.to_string());
        server.add_service(service);
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker { node: node.clone() },
    ));
    server.add_service(background_service(
        "reload",
        Reloader {
            node: node.clone(),
            path: config_path,
        },
    ));
    tracing::info!(
        pop = %node.name,
        listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = ?config.admin,
        zones = config.zones.len(),
        "edgenet PoP starting"
    );
    let drain = config.node.drain_timeout;
    on_start(node.clone());
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { node, drain }),
    });
    Ok(())
}

/// HTTP/2 limits for client connections: the stream count clients are told, the header list
/// size (as for HTTP/1), and the resets that end a connection with GOAWAY: streams a client
/// resets before we accept them (rapid reset, CVE-2023-44487) and streams we must reset for
/// protocol errors (CONTINUATION and other floods).
fn h2_limits(config: &Config) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut b = pingora_core::protocols::http::v2::server::H2Options::new();
    b.max_concurrent_streams(128)
        .max_header_list_size(config.limits.max_request_header_bytes as u32)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(Some(256));
    b
}

/// The connection-level app of a listener: counts open client connections and, on plain
/// listeners with h2c, tells HTTP/2 prior knowledge from HTTP/1 by the first bytes.
struct ClientConnections<A> {
    http1: Arc<A>,
    /// The HTTP/2 app for h2c; `None` where h2c is off or the listener is TLS.
    h2c: Option<Arc<A>>,
    open: IntGauge,
    /// The node whose `[limits]` client listeners enforce (connections per client, the head
    /// timeout); none on the backbone listener, whose clients are PoPs.
    node: Option<Arc<Node>>,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let client = crate::guard::client_ip(&session);
        let _slot = match (&self.node, client) {
            (Some(node), Some(ip)) => {
                match node.client_connections.acquire(ip, &node.snapshot.load()) {
                    Some(slot) => Some(slot),
                    None => {
                        node.metrics.connections_refused.inc();
                        // Over the cap: close without reading a byte.
                        return None;
                    }
                }
            }
            _ => None,
        };
        // Only client TLS connections have a ClientHello on file.
        let hello = (self.node.is_some() && session.get_ssl_digest().is_some())
            .then(|| crate::tls::ClientHellos::key(session.get_socket_digest()))
            .flatten();
        self.open.inc();
        self.serve(session, client, shutdown).await;
        self.open.dec();
        if let (Some(node), Some(key)) = (&self.node, hello) {
            node.hellos.remove(key);
        }
        None
    }

    async fn cleanup(&self) {
        self.http1.cleanup().await;
        if let Some(h2c) = &self.h2c {
            h2c.cleanup().await;
        }
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> ClientConnections<A> {
    /// Serves one client connection to its end, keep-alive requests included.
    async fn serve(
        &self,
        session: Stream,
        client: Option<std::net::IpAddr>,
        shutdown: &ShutdownWatch,
    ) {
        let Some(node) = &self.node else {
            // The backbone: PoPs, trusted by their certificates.
            let mut stream = session;
            while let Some(s) = self.http1.process_new(stream, shutdown).await {
                stream = s;
            }
            return;
        };
        let limits = node.snapshot.load().config.limits.clone();
        let floods = node.metrics.h2_floods.clone();
        let on_flood: crate::guard::OnFlood = Arc::new(move |kind| {
            floods.with_label_values(&[kind]).inc();
            tracing::warn!(client = ?client, kind, "HTTP/2 control frame flood: GOAWAY");
        });
        let h2_alpn = session.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2);
        let mut guarded = Guarded::new(session, limits.h2_max_control_frames, on_flood);
        if let Some(h2c) = &self.h2c {
            match guarded.sniff_h2c().await {
                Some(true) => {
                    h2c.process_new(Box::new(guarded), shutdown).await;
                    return;
                }
                Some(false) => {}
                None => return,
            }
        }
        if h2_alpn {
            self.http1.process_new(Box::new(guarded), shutdown).await;
            return;
        }
        // HTTP/1, Pingora's keep-alive loop (`ServerApp for HttpServerApp`) with each request
        // head read first: within the header timeout, after the keep-alive idle time between
        // requests.
        let max = limits.max_request_header_bytes;
        let (header, keepalive) = (limits.header_timeout, limits.keepalive_timeout);
        match guarded.read_head(header, header, max, shutdown).await {
            Head::Ready => {}
            Head::Closed => return,
            Head::Idle | Head::Slow => return node.metrics.slow_heads.inc(),
        }
        let mut session = ServerSession::new_http1(Box::new(guarded));
        session.set_keepalive((!*shutdown.borrow()).then_some(keepalive.as_secs().max(1)));
        session.set_keepalive_reuses_remaining(
            self.http1
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut result = self.http1.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let Ok(mut guarded) = stream.into_any().downcast::<Guarded>() else {
                return;
            };
            match guarded.read_head(keepalive, header, max, shutdown).await {
                Head::Ready => {}
                Head::Closed | Head::Idle => return,
                Head::Slow => return node.metrics.slow_heads.inc(),
            }
            let mut session = ServerSession::new_http1(guarded);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.http1.process_new_http(session, shutdown).await;
        }
    }
}

/// Reloads the configuration on SIGHUP.
struct Reloader {
    node: Arc<Node>,
    path: PathBuf,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {}
                _ = shutdown.changed() => return,
            }
            let node = self.node.clone();
            let path = self.path.clone();
            // Validation reads files and resolves names: keep it off the async threads.
            let result = tokio::task::spawn_blocking(move || reload(&node, &path)).await;
            match result {
                Ok(Ok(version)) => {
                    self.node.metrics.reload(true);
                    tracing::info!(version, path = %self.path.display(), "configuration reloaded");
                }
                Ok(Err(lines)) => {
                    self.node.metrics.reload(false);
                    for line in &lines {
                        tracing::error!("reload refused: {line}");
                    }
                    tracing::error!(
                        errors = lines.len(),
                        "configuration reload refused; the previous configuration keeps serving"
                    );
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    }
}

/// Validates and applies the configuration at `path` (with the control plane's zones when the
/// node follows one). Returns the new version, or every error.
pub fn reload(node: &Node, path: &Path) -> Result<u64, Vec<String>> {
    let zones = crate::lock(&node.control_zones).clone();
    reload_with(node, path, zones.as_deref())
}

/// Applies zones from the control plane with the rest of the file at `path`; on success they
/// are kept for later reloads. Nothing changes on error.
pub fn apply_control_zones(
    node: &Node,
    path: &Path,
    zones: Vec<ZoneSection>,
) -> Result<u64, Vec<String>> {
    let version = reload_with(node, path, Some(&zones))?;
    *crate::lock(&node.control_zones) = Some(zones);
    node.metrics.reload(true);
    Ok(version)
}

fn reload_with(
    node: &Node,
    path: &Path,
    zones: Option<&[ZoneSection]>,
) -> Result<u64, Vec<String>> {
    let config = load_config_with(path, zones).map_err(|e| e.lines())?;
    let current = node.snapshot.load_full();
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
    let certs = CertTable::new(&config).map_err(|e| vec![format!("{origin}: {e}")])?;
    let version = current.version + 1;
    let snapshot = build_snapshot(
        Arc::new(config),
        version,
        &SnapshotParts {
            health: &node.health,
            metrics: &node.metrics,
            shield: &node.shield,
            workers: &node.workers,
        },
    )
    .map_err(|e| vec![format!("{origin}: {e}")])?;
    node.certs.swap(certs);
    node.snapshot.store(Arc::new(snapshot));
    node.metrics.config_version.set(version as i64);
    Ok(version)
}

/// SIGTERM: drain and exit 0 once no request is in flight (or the drain time is up);
/// SIGINT: exit at once; SIGQUIT: Pingora's graceful upgrade.
struct Signals {
    node: Arc<Node>,
    drain: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(drain = %humantime::format_duration(self.drain), "SIGTERM: draining");
                self.node.draining.store(true, Ordering::Relaxed);
                // Withdraw the anycast prefixes first and keep serving while routers move
                // traffic away; only then close the listeners.
                if let Some(anycast) = self.node.anycast.get() {
                    anycast.terminate().await;
                }
                let node = self.node.clone();
                let drain = self.drain;
                std::thread::spawn(move || exit_when_drained(&node, drain));
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Waits until every client connection has closed (Pingora closes idle ones and each busy one
/// after its request), or the drain time is up, then exits 0.
fn exit_when_drained(node: &Node, drain: Duration) {
    let deadline = Instant::now() + drain;
    // Let Pingora stop its accept loops and wake idle connections first.
    std::thread::sleep(Duration::from_millis(50));
    loop {
        let open = node.metrics.open_connections.get();
        let inflight = node.metrics.inflight.get();
        if open <= 0 && inflight <= 0 {
            tracing::info!("drained: no connection left, exiting");
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                open,
                inflight,
                "drain time is up, exiting with requests in flight"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(anycast) = node.anycast.get() {
        anycast.shutdown();
    }
    let _ = std::fs::remove_file(&node.workers.socket);
    // Give the access log writer a moment to flush the last lines.
    std::thread::sleep(Duration::from_millis(50));
    std::process::exit(0);
}
