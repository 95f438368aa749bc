//! TLS termination (stage 2): the certificate is chosen by SNI from the zones' certificates, and
//! the table is swapped atomically on reload so new handshakes see new certificates at once.
//! Before the handshake, [`PreTls`] reads the ClientHello off the socket (then puts it back for
//! rustls) to take the client's JA4 fingerprint, kept in [`ClientHellos`] for the connection's
//! requests.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use edgenet_config::{CertMaterial, Config, HostPattern, ZoneTls};
use edgenet_proxy::adapter::peers::hello_key;
use edgenet_proxy::adapter::Sni;
use edgenet_proxy::core::ClientHellos;
use pingora_core::listeners::{PreTlsProcess, TlsAccept};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::GetSocketDigest;
use prometheus::IntCounter;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by hostname.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI (e.g. by IP address): the first zone's certificate.
    default: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// Builds the table from a validated config whose generated certificates already exist.
    pub fn new(config: &Config) -> anyhow::Result<CertTable> {
        let provider = rustls::crypto::ring::default_provider();
        let mut table = CertTable::default();
        for zone in &config.zones {
            let Some(tls) = &zone.tls else { continue };
            let CertMaterial::Loaded { chain, key } = &tls.material else {
                anyhow::bail!(
                    "zone {}: certificate {} was not generated",
                    zone.name,
                    tls.cert_path.display()
                );
            };
            let signing = provider
                .key_provider
                .load_private_key(key.clone_key())
                .map_err(|e| anyhow::anyhow!("{}: {e}", tls.key_path.display()))?;
            let ck = Arc::new(CertifiedKey::new(chain.clone(), signing));
            for h in &zone.hostnames {
                match h {
                    HostPattern::Exact(n) => table.exact.insert(n.clone(), ck.clone()),
                    HostPattern::Wildcard(s) => table.wildcard.insert(s.clone(), ck.clone()),
                };
            }
            table.default.get_or_insert(ck);
        }
        Ok(table)
    }

    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        // rustls hands over SNI lower-cased and without a trailing dot.
        if let Some(c) = self.exact.get(name) {
            return Some(c.clone());
        }
        edgenet_http::host::wildcard_suffixes(name)
            .find_map(|suffix| self.wildcard.get(suffix).cloned())
    }
}

/// The SNI certificate resolver handed to rustls.
#[derive(Debug)]
pub struct SniResolver {
    table: ArcSwap<CertTable>,
}

impl SniResolver {
    /// A resolver serving `table`.
    pub fn new(table: CertTable) -> SniResolver {
        SniResolver {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// Replaces the table (on reload).
    pub fn swap(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // An unknown SNI fails the handshake rather than showing another zone's certificate.
        self.table.load().lookup(hello.server_name())
    }
}

/// Counts handshakes and records the SNI for the HTTP layer.
pub struct HandshakeCallbacks {
    /// Completed handshakes.
    pub completed: IntCounter,
}

#[async_trait]
impl TlsAccept for HandshakeCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        self.completed.inc();
        Some(Arc::new(Sni(tls.server_name().map(str::to_owned))))
    }
}

/// Counts connections on TLS listeners before their handshake starts.
pub struct PreTls {
    /// Connections accepted on TLS listeners.
    pub started: IntCounter,
    /// Where fingerprints go.
    pub hellos: Arc<ClientHellos>,
    /// How long the ClientHello may take (`limits.header_timeout`).
    pub timeout: Arc<dyn Fn() -> std::time::Duration + Send + Sync>,
}

#[async_trait]
impl PreTlsProcess for PreTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora_error::Result<()> {
        use edgenet_shield::ja4::{fingerprint, Hello, MAX_HELLO};
        use tokio::io::AsyncReadExt;
        self.started.inc();
        let until = tokio::time::Instant::now() + (self.timeout)();
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        let ja4 = loop {
            match fingerprint(&buf) {
                Hello::Ja4(j) => break Some(j),
                Hello::Incomplete if buf.len() < MAX_HELLO => {}
                _ => break None,
            }
            match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                // Gone, or too slow to send a ClientHello (a TLS slowloris): drop it.
                _ => {
                    return pingora_error::Error::e_explain(
                        pingora_error::ErrorType::ReadTimedout,
                        "no complete ClientHello within limits.header_timeout",
                    )
                }
            }
        };
        stream.rewind(&buf);
        if let (Some(ja4), Some(key)) = (ja4, hello_key(stream.get_socket_digest())) {
            self.hellos.insert(key, ja4);
        }
        Ok(())
    }
}

/// Creates self-signed certificates for zones whose files are missing and that asked for it,
/// and turns their material into `Loaded`. Logs each one it creates.
pub fn generate_missing(config: &mut Config) -> anyhow::Result<()> {
    for zone in &mut config.zones {
        let Some(tls) = &mut zone.tls else { continue };
        if !matches!(tls.material, CertMaterial::Generate) {
            continue;
        }
        let names: Vec<String> = zone.hostnames.iter().map(|h| h.to_string()).collect();
        let (chain, key) = generate(tls, names)?;
        tracing::warn!(
            zone = %zone.name,
            cert = %tls.cert_path.display(),
            key = %tls.key_path.display(),
            "created a self-signed certificate because the configured files were missing; \
             clients will not trust it: replace it with a real certificate"
        );
        tls.material = CertMaterial::Loaded { chain, key };
    }
    Ok(())
}

fn generate(
    tls: &ZoneTls,
    names: Vec<String>,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)?;
    write_file(&tls.cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&tls.key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    let key = PrivateKeyDer::try_from(key_pair.serialize_der())
        .map_err(|e| anyhow::anyhow!("generated key: {e}"))?;
    Ok((vec![cert.der().clone()], key))
}

/// Writes a file with `mode` (0600 for a key) beside its target and renames it into place.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    // Written beside the target and renamed, so a crash never leaves half a key behind.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}
