//! Signals: SIGHUP reloads the configuration ([`Reloader`]); SIGTERM withdraws the anycast
//! prefixes, serves on while routers move traffic away, then drains and exits 0 once no client
//! connection is open ([`Signals`], `exit_when_drained`); SIGINT exits at once; SIGQUIT, sent
//! by `edgenet pop --upgrade`, hands the listening sockets to the new process, then drains the
//! same way (`crate::upgrade`). Pingora's own grace period is a fixed sleep, hence the watcher.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::node::Node;
use crate::upgrade::NodeFiles;

/// Reloads the configuration on SIGHUP.
pub struct Reloader {
    /// The node.
    pub node: Arc<Node>,
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
            // Validation reads files and resolves names: keep it off the async threads.
            let result = tokio::task::spawn_blocking(move || node.reload()).await;
            let metrics = &self.node.core.metrics;
            match result {
                Ok(Ok(version)) => {
                    metrics.reload(true);
                    let path = self.node.source.path().display();
                    tracing::info!(version, %path, "configuration reloaded");
                }
                Ok(Err(lines)) => {
                    metrics.reload(false);
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

/// SIGTERM: drain and exit 0 once no request is in flight (or the drain time is up);
/// SIGINT: exit at once; SIGQUIT: hand over to the process `edgenet pop --upgrade` started,
/// then drain the same way.
pub struct Signals {
    /// The node.
    pub node: Arc<Node>,
    /// The longest SIGTERM waits for connections to close.
    pub drain: Duration,
    /// Where the new process of an upgrade waits.
    pub files: NodeFiles,
    /// Pingora's execution phases: the drain watch starts once Pingora stopped accepting.
    pub phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!(drain = %humantime::format_duration(self.drain), "SIGTERM: draining");
                    self.node.draining.store(true, Ordering::Relaxed);
                    // Withdraw the anycast prefixes first and keep serving while routers move
                    // traffic away; only then close the listeners.
                    if let Some(anycast) = self.node.anycast.get() {
                        anycast.terminate().await;
                    }
                    self.exit_when_drained();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = quit.recv() => {
                    let sock = &self.files.upgrade_sock;
                    // The new process listens there just after it signals; a stray SIGQUIT
                    // (nobody waiting) must not take the sockets away from this node.
                    if !crate::upgrade::successor_waiting(sock, Duration::from_secs(5)).await {
                        tracing::error!(
                            socket = %sock.display(),
                            "SIGQUIT, but no new process waits for the listening sockets (start \
                             one with `edgenet pop --upgrade`): serving on"
                        );
                        continue;
                    }
                    tracing::info!(
                        socket = %sock.display(),
                        "SIGQUIT: upgrade: passing the listening sockets to the new process"
                    );
                    if let Some(anycast) = self.node.anycast.get() {
                        anycast.hand_over();
                    }
                    // Both accept for Pingora's close timeout; then this one stops accepting and
                    // drains like on SIGTERM.
                    self.exit_when_drained();
                    return ShutdownSignal::GracefulUpgrade;
                }
            }
        }
    }
}

impl Signals {
    /// Starts the thread that waits for Pingora to stop accepting (at once on SIGTERM, after
    /// the close timeout on an upgrade), marks the node draining and exits once it is drained
    /// (or the drain time is up).
    fn exit_when_drained(&self) {
        let node = self.node.clone();
        let (drain, files) = (self.drain, self.files.clone());
        let phases = edgenet_proxy::lock(&self.phases).take();
        std::thread::spawn(move || {
            if let Some(mut phases) = phases {
                loop {
                    match phases.blocking_recv() {
                        Ok(ExecutionPhase::ShutdownStarted) => break,
                        Err(broadcast::error::RecvError::Closed) => break,
                        _ => {}
                    }
                }
            }
            node.draining.store(true, Ordering::Relaxed);
            exit_when_drained(&node, drain, &files);
        });
    }
}

/// Waits until every client connection has closed (Pingora closes idle ones and each busy one
/// after its request), or the drain time is up, then exits 0.
fn exit_when_drained(node: &Node, drain: Duration, files: &NodeFiles) {
    let deadline = Instant::now() + drain;
    // Let Pingora stop its accept loops and wake idle connections first.
    std::thread::sleep(Duration::from_millis(50));
    loop {
        let open = node.core.metrics.open_connections.get();
        let inflight = node.core.metrics.inflight.get();
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
    let _ = std::fs::remove_file(&node.core.workers.socket);
    files.remove_pid_if_mine();
    // Give the access log writer a moment to flush the last lines.
    std::thread::sleep(Duration::from_millis(50));
    std::process::exit(0);
}
