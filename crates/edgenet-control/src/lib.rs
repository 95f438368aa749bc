//! The control plane (`edgenet control`): a REST API for accounts, zones, PoPs and tokens over
//! a SQL store, the configuration stream every PoP follows, and the backbone's CA. What it says to
//! PoPs is `edgenet-protocol`'s types; the PoP's side is `edgenet-node`'s follower.
//!
//! Start at [`serve`]; `api/` holds the routes, `store.rs` the SQL, `stream.rs` the
//! versioned stream, `reports.rs` the PoPs' report channel, `nats.rs` the mirror into NATS
//! JetStream, `ca.rs` the CA.

pub mod api;
pub mod ca;
pub mod certificates;
pub mod nats;
pub mod reports;
pub mod store;
pub mod stream;
pub mod workers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use api::App;
pub use store::Store;

/// Where the control plane keeps its state and listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A directory for the SQLite database and the first admin token.
    pub data: PathBuf,
    /// `postgres://...` to keep the state in PostgreSQL instead of SQLite.
    pub database: Option<String>,
    /// The API's address.
    pub listen: SocketAddr,
    /// `nats://...`: also mirror every change into a JetStream bucket for PoPs that follow
    /// through NATS.
    pub distribution: Option<String>,
    /// The file of the key sealing certificates' private keys (made when missing).
    pub certificates_key: PathBuf,
    /// Who issues the zones' edge certificates.
    pub issuer: IssuerOptions,
    /// Where uploads' compiled artifacts are kept for PoPs on this machine (none: thrown
    /// away once the upload is checked).
    pub worker_artifacts: Option<PathBuf>,
}

/// Who issues the zones' edge certificates.
#[derive(Debug, Clone)]
pub enum IssuerOptions {
    /// Nobody: custom certificates only.
    None,
    /// The control plane's local CA (`DATA/zones-ca.pem`).
    Local,
    /// An ACME CA.
    Acme(certificates::acme::AcmeOptions),
}

/// The database URL for the options: PostgreSQL when given, else SQLite in the data directory.
pub fn database_url(o: &ServeOptions) -> String {
    o.database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", o.data.join("control.db").display()))
}

/// On first start (no token at all), creates an admin token and writes its secret to
/// `DATA/admin-token` (mode 0600). Returns the secret when it made one.
pub async fn bootstrap_admin(app: &App, data: &Path) -> anyhow::Result<Option<String>> {
    if !app.store.tokens(store::Owner::Operator).await?.is_empty() {
        return Ok(None);
    }
    let (_, secret) = app
        .create_token("bootstrap admin", &["admin"], None)
        .await?;
    let path = data.join("admin-token");
    write_private(&path, secret.as_bytes())?;
    Ok(Some(secret))
}

/// Writes a secret (a key, a token) readable by its owner only: a temporary file with mode
/// 0600, then a rename, so the file is never half written or briefly readable by others.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    std::fs::rename(tmp, path)
}

/// Runs the control plane until SIGTERM or SIGINT.
pub async fn serve(o: ServeOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.data)
        .map_err(|e| anyhow::anyhow!("--data {}: {e}", o.data.display()))?;
    let url = database_url(&o);
    let store = Store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the store: {e}"))?;
    let nats = match &o.distribution {
        Some(url) => Some(nats::Publisher::connect(url).await?),
        None => None,
    };
    let app = App::new(store, nats).await?;
    let _ = app.ca.set(ca::Ca::load_or_create(&o.data)?);
    let sealing = certificates::load_or_create_sealing_key(&o.certificates_key)?;
    let issuer = match &o.issuer {
        IssuerOptions::None => None,
        IssuerOptions::Local => {
            let ca =
                ca::Ca::load_or_create_named(&o.data, "zones-ca", "edgenet local CA for zones")?;
            Some(certificates::Issuer::Local(Box::new(ca)))
        }
        IssuerOptions::Acme(a) => Some(certificates::Issuer::Acme(certificates::acme::Acme::new(
            a.clone(),
        ))),
    };
    if let Some(i) = &issuer {
        tracing::info!(issuer = %i.describe(), "zones get edge certificates");
    }
    let _ = app
        .certs
        .set(certificates::Certificates::new(sealing, issuer));
    certificates::run(app.clone());
    {
        // Expired KV values, day-old tombstones and day-old purges go every ten minutes.
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                let now = api::unix_ms();
                match app.store.kv_prune(now, now - 86_400_000).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "KV pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "KV prune"),
                }
                let before =
                    (now as u64 * 1000).saturating_sub(api::purge::PURGE_KEPT.as_micros() as u64);
                match api::purge::prune(&app, before).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "purges pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge prune"),
                }
            }
        });
    }
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("the edgenet binary: {e}"))?;
    let _ = app.workers.set(workers::Workers::compiling(
        exe,
        o.data.join("workers"),
        o.worker_artifacts.clone(),
    ));
    if let Some(n) = &app.nats {
        let written = n.sync(&app).await?;
        tracing::info!(written, "configuration bucket in step with the store");
        n.listen_for_acks(app.clone());
        n.listen_for_reports(app.clone());
        let app2 = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                if let Some(n) = &app2.nats {
                    if let Err(e) = n.sync(&app2).await {
                        tracing::warn!(error = %e, "configuration bucket sync");
                    }
                }
            }
        });
    }
    api::cni::run_notifier(app.clone());
    if let Some(secret) = bootstrap_admin(&app, &o.data).await? {
        tracing::info!(
            path = %o.data.join("admin-token").display(),
            "created the first admin token (also written to the file): {secret}"
        );
    }
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", o.listen))?;
    tracing::info!(listen = %o.listen, store = %if o.database.is_some() { "postgresql" } else { "sqlite" }, "control plane serving");
    axum::serve(listener, api::router(app))
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        })
        .await?;
    Ok(())
}
