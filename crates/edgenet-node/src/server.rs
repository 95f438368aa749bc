//! Running a PoP: the node's state around its first configuration, then Pingora services for
//! the client listeners, the backbone listener, the workers' subrequest socket and the admin
//! listener, and background services for health checks, backbone probes and reloads, until a
//! signal ends it (`signals`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use edgenet_config::{Config, ListenerProtocol, ZoneSection};
use edgenet_proxy::access_log::AccessLogger;
use edgenet_proxy::adapter::roles::{Backbone, Client, Role, Subrequest};
use edgenet_proxy::adapter::{EdgeProxy, Peers};
use edgenet_proxy::backbone::BackboneFiles;
use edgenet_proxy::metrics::Metrics;
use edgenet_proxy::Core;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;

use crate::admin::auth::AdminKeys;
use crate::admin::Admin;
use crate::config::ConfigSource;
use crate::connections::ClientConnections;
use crate::health::HealthChecker;
use crate::node::Node;
use crate::signals::{Reloader, Signals};
use crate::tls::{CertTable, HandshakeCallbacks, PreTls, SniResolver};
use crate::upgrade::NodeFiles;

/// How a PoP starts beside its file.
#[derive(Default)]
pub struct RunOptions {
    /// The zones that came from the control plane (kept across SIGHUP reloads of the file).
    pub control_zones: Option<Vec<ZoneSection>>,
    /// The control plane's certificates it last applied, opened.
    pub control_certs: Vec<crate::tls::ControlCert>,
    /// The backbone identity, for the `[backbone]` listener and tiered cache.
    pub backbone: Option<BackboneFiles>,
    /// The edge key-value store workers' namespaces are in.
    pub kv: Option<Arc<dyn edgenet_workers::KvBackend>>,
    /// Take the listening sockets over from the node running with this file (`--upgrade`).
    pub upgrade: bool,
}

/// Runs a PoP from the file at `path` until SIGTERM (drain, exit 0), SIGINT (exit at once) or
/// an upgrade (SIGQUIT from `edgenet pop --upgrade`: hand over, drain, exit 0). With `upgrade`
/// it takes over from the node running with the same file.
pub fn run(path: PathBuf, upgrade: bool) -> anyhow::Result<()> {
    let config =
        crate::config::load(&path, None).map_err(|e| anyhow::anyhow!(e.lines().join("\n")))?;
    let options = RunOptions {
        upgrade,
        ..RunOptions::default()
    };
    run_with(path, config, options, |_| {})
}

/// Runs a PoP from `config` (loaded from `path`), with what came from a control plane, calling
/// `on_start` with the node once it exists (to start the control-plane follower).
pub fn run_with(
    path: PathBuf,
    config: Config,
    options: RunOptions,
    on_start: impl FnOnce(Arc<Node>),
) -> anyhow::Result<()> {
    let RunOptions {
        control_zones,
        control_certs,
        backbone,
        kv,
        upgrade,
    } = options;
    let files = NodeFiles::beside(&path)?;
    // Who to take over from, before anything is built: a missing node is the first error.
    let predecessor = if upgrade {
        if config.interconnect.is_some() || config.tunnels.is_some() {
            anyhow::bail!(
                "--upgrade: this node has [interconnect] or [tunnels], whose kernel devices and \
                 sessions do not pass to a new process yet: restart it instead"
            );
        }
        files.check_socket_path()?;
        Some(files.running()?)
    } else {
        if let Ok(pid) = files.running() {
            anyhow::bail!(
                "a node already runs with {} (process {pid}): stop it first, or replace it with \
                 `edgenet pop --upgrade`",
                path.display()
            );
        }
        None
    };
    let metrics = Metrics::new();
    let log = AccessLogger::start(&config.access_log, metrics.access_log_dropped.clone())?;
    let table = CertTable::new(&config, &control_certs)?;
    table.publish_expiry(&metrics.tls_certificate_expiry);
    let certs = Arc::new(SniResolver::new(table));
    let admin_keys = match &config.admin {
        Some(admin) => AdminKeys::prepare(admin)?,
        None => AdminKeys::none_configured(),
    };
    let node = Arc::new(Node {
        core: Arc::new(Core::new(config.clone(), log, metrics, kv)?),
        peers: Arc::new(Peers::default()),
        certs: certs.clone(),
        draining: AtomicBool::new(false),
        anycast: OnceLock::new(),
        interconnect: OnceLock::new(),
        tunnels: OnceLock::new(),
        source: ConfigSource::new(path, control_zones, control_certs),
        admin_keys,
    });
    let core = &node.core;
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
    // Beside the configuration file, so `--upgrade` finds the running node's (`upgrade`).
    conf.upgrade_sock = files.upgrade_sock.to_string_lossy().into_owned();
    let opt = pingora_core::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if let Some(pid) = predecessor {
        crate::upgrade::ask_to_hand_over(pid, &files)?;
    }
    // On an upgrade, this waits for the old node's listening sockets (and exits 1 if none come).
    server.bootstrap();
    // Held (locked) until the process exits.
    let _pid_lock = files.write_pid()?;
    // BGP and the devices start once the old node (on an upgrade) has let go of its sessions.
    if let Some(anycast) = &config.anycast {
        let listeners = config.listeners.iter().map(|l| l.address).collect();
        let a = crate::anycast::Anycast::start(anycast, listeners, &core.metrics, upgrade)?;
        let _ = node.anycast.set(a);
    }
    if let Some(ic) = &config.interconnect {
        let speaker = node.anycast.get().map(|a| a.speaker());
        let offered = config
            .anycast
            .iter()
            .flat_map(|a| &a.prefixes)
            .filter_map(|p| p.to_string().parse().ok())
            .collect();
        let i = crate::interconnect::Interconnects::start(ic, speaker, offered)?;
        let _ = node.interconnect.set(i);
    }
    if let Some(t) = &config.tunnels {
        // BGP over tunnels runs in the PoP's one speaker; reports share the interconnects' wake.
        let speaker = node
            .anycast
            .get()
            .map(|a| a.speaker())
            .or_else(|| node.interconnect.get().and_then(|i| i.speaker()));
        let changed = node
            .interconnect
            .get()
            .map_or_else(Default::default, |i| i.changed());
        // Customer prefixes are announced by the anycast speaker, to its peers.
        let announce = node.anycast.get().map(|a| {
            let a = a.clone();
            Arc::new(move |p| a.set_customer_prefixes(p)) as crate::tunnels::driver::Announce
        });
        let t = crate::tunnels::Tunnels::start(t, speaker, changed, announce, &core.metrics)?;
        let _ = node.tunnels.set(t);
    }

    let server_conf = server.configuration.clone();
    // A client listener's proxy: h2c where the listener has it, and the HTTP/2 abuse limits.
    let client_proxy = |h2c: bool| {
        let mut proxy =
            pingora_proxy::http_proxy(&server_conf, EdgeProxy::new(node.shared(), Client));
        let mut opts = HttpServerOptions::default();
        opts.h2c = h2c;
        proxy.server_options = Some(opts);
        proxy.h2_options = Some(h2_limits(&config));
        Arc::new(proxy)
    };

    let pressure = Arc::new(crate::pressure::Pressure::start());
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
        // On TLS, ALPN picks the protocol inside the HTTP/1 app; on plain listeners with h2c,
        // `ClientConnections` reads the preface itself and hands the stream to the right app.
        let h2c = (protocol == ListenerProtocol::Http && h2c).then(|| client_proxy(true));
        let app = ClientConnections {
            http1: client_proxy(false),
            h2c,
            open: core.metrics.open_connections.clone(),
            core: Some(core.clone()),
            pressure: Some(pressure.clone()),
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
                // No L4 read buffer on plain listeners: the HTTP/1 session reads into its own
                // header buffer, and Pingora's 64 KiB one was most of an idle connection's
                // memory (bench/idle.sh).
                ListenerProtocol::Http => service.add_listener(
                    ListenerConfig::tcp(addr.as_str())
                        .tcp_socket_options(sock)
                        .l4_buffer(L4BufferSettings {
                            read: Some(0),
                            write: None,
                        }),
                ),
                ListenerProtocol::Https => {
                    let mut tls = TlsSettings::with_callbacks(Box::new(HandshakeCallbacks {
                        completed: core.metrics.tls_handshakes.clone(),
                    }))?;
                    tls.set_cert_resolver(certs.clone());
                    tls.enable_h2();
                    service.add_tls_with_settings(addr, Some(sock), tls);
                }
            }
        }
        if protocol == ListenerProtocol::Https {
            service.endpoints().set_pre_tls_callback(Arc::new(PreTls {
                started: core.metrics.tls_started.clone(),
                hellos: core.hellos.clone(),
                timeout: {
                    let core = core.clone();
                    Arc::new(move || core.snapshot.load().config.limits.header_timeout)
                },
                challenges: {
                    let core = core.clone();
                    Arc::new(move || core.challenges.load_full())
                },
            }));
        }
        server.add_service(service);
    }
    match (config.backbone, &backbone) {
        (Some(addr), Some(files)) => {
            node.peers.set_backbone(files)?;
            let proxy =
                pingora_proxy::http_proxy(&server_conf, EdgeProxy::new(node.shared(), Backbone));
            server.add_service(unguarded("edgenet backbone", proxy, core, |s| {
                let mut sock = TcpSocketOptions::default();
                sock.ipv6_only = addr.is_ipv6().then_some(true);
                let tls = crate::backbone::server_tls(files)?;
                s.add_tls_with_settings(&addr.to_string(), Some(sock), tls);
                Ok(())
            })?);
            server.add_service(background_service(
                "backbone probes",
                crate::backbone::Prober { node: node.clone() },
            ));
        }
        (Some(addr), None) => tracing::error!(
            listen = %addr,
            "backbone.listen is set but there is no backbone certificate (PoPs get one from \
             their control plane): the backbone listener is off"
        ),
        _ => {}
    }
    // Workers' requests come back in here and enter the pipeline at the cache stage.
    let socket = &core.workers.socket;
    let proxy = pingora_proxy::http_proxy(&server_conf, EdgeProxy::new(node.shared(), Subrequest));
    server.add_service(unguarded("edgenet subrequests", proxy, core, |s| {
        use std::os::unix::fs::PermissionsExt;
        prepare_socket(socket);
        let mode = std::fs::Permissions::from_mode(0o600);
        s.add_uds(&socket.to_string_lossy(), Some(mode));
        Ok(())
    })?);
    if let Some(admin) = &config.admin {
        let app = |socket| {
            HttpServer::new_app(Admin {
                node: node.clone(),
                socket,
            })
        };
        let mut service = Service::new("edgenet admin".to_string(), app(false));
        service.add_tcp(&admin.address.to_string());
        server.add_service(service);
        if let Some(socket) = &admin.socket {
            use std::os::unix::fs::PermissionsExt;
            let mut service = Service::new("edgenet admin socket".to_string(), app(true));
            // On an upgrade the socket bound there comes from the old node: keep its file.
            if !upgrade {
                remove_stale_socket(socket)?;
            }
            let mode = std::fs::Permissions::from_mode(0o600);
            service.add_uds(&socket.to_string_lossy(), Some(mode));
            server.add_service(service);
        }
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker { core: core.clone() },
    ));
    server.add_service(background_service(
        "reload",
        Reloader { node: node.clone() },
    ));
    tracing::info!(
        pop = %core.name,
        listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = ?config.admin.as_ref().map(|a| a.address),
        zones = config.zones.len(),
        "edgenet PoP starting"
    );
    let drain = config.node.drain_timeout;
    on_start(node.clone());
    let phases = server.watch_execution_phase();
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            node,
            drain,
            files,
            phases: std::sync::Mutex::new(Some(phases)),
        }),
    });
    Ok(())
}

/// The connection app of a listener whose clients are trusted.
type Unguarded<R> = ClientConnections<HttpProxy<EdgeProxy<R>>>;

/// A service for a listener whose clients are trusted (other PoPs, the node's own workers):
/// no per-client connection cap or head timeout; PoPs on the backbone multiplex over few
/// connections. `bind` adds its endpoints.
fn unguarded<R: Role>(
    name: &str,
    proxy: HttpProxy<EdgeProxy<R>>,
    core: &Arc<Core>,
    bind: impl FnOnce(&mut Service<Unguarded<R>>) -> anyhow::Result<()>,
) -> anyhow::Result<Service<Unguarded<R>>> {
    let app = ClientConnections {
        http1: Arc::new(proxy),
        h2c: None,
        open: core.metrics.open_connections.clone(),
        core: None,
        pressure: None,
    };
    let mut service = Service::new(name.to_string(), app);
    bind(&mut service)?;
    Ok(service)
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

/// Removes a socket left at `path` by an earlier run; refuses to remove anything else.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(std::fs::remove_file(path)?),
        Ok(_) => anyhow::bail!(
            "admin.socket {}: something that is not a socket is there",
            path.display()
        ),
        Err(_) => Ok(()),
    }
}

/// Makes way for this node's subrequest socket: removes a stale one at `path`, and those of
/// nodes that are gone (`edgenet-subrequests-PID.sock` beside it with no process PID: a node
/// killed without draining leaves its socket behind).
pub fn prepare_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
    let Some(dir) = path.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("edgenet-subrequests-"))
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sockets_of_nodes_that_are_gone_are_removed() {
        let dir = std::env::temp_dir().join(format!("edgenet-sockets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = |pid: u32| dir.join(format!("edgenet-subrequests-{pid}.sock"));
        let (gone, alive, other) = (sock(4_000_000_000), sock(1), dir.join("unrelated.sock"));
        for f in [&gone, &alive, &other] {
            std::fs::write(f, b"").unwrap();
        }
        let mine = sock(std::process::id());
        std::fs::write(&mine, b"").unwrap();
        super::prepare_socket(&mine);
        assert!(!gone.exists() && !mine.exists());
        assert!(
            alive.exists() && other.exists(),
            "pid 1 lives; other files stay"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
