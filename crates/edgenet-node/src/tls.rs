//! TLS termination (stage 2): the certificate is chosen by SNI from the zones' certificates
//! (their files, and those the control plane streams: [`ControlCert`]), and the table is
//! swapped atomically on reload or renewal, so new handshakes see new certificates at once
//! while open connections keep theirs. Before the handshake, [`PreTls`] reads the ClientHello
//! off the socket (then puts it back for rustls) to take the client's JA4 fingerprint, kept in
//! [`ClientHellos`] for the connection's requests; a hello that offers only `acme-tls/1` for a
//! name under ACME validation is answered there (RFC 8737), since the listeners' ALPN offers
//! h2 and http/1.1 only.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use edgenet_config::{CertMaterial, Config, HostPattern, ZoneTls};
use edgenet_protocol::CertificateSource;
use edgenet_proxy::adapter::peers::hello_key;
use edgenet_proxy::adapter::Sni;
use edgenet_proxy::core::ClientHellos;
use pingora_core::listeners::{PreTlsProcess, TlsAccept};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::GetSocketDigest;
use prometheus::{IntCounter, IntGaugeVec};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate the control plane streamed, its key opened for this PoP.
#[derive(Debug, Clone)]
pub struct ControlCert {
    /// Its id.
    pub id: String,
    /// The zone it is for.
    pub zone: String,
    /// Custom or edge.
    pub source: CertificateSource,
    /// The names it is served for (`*.x` for a wildcard).
    pub hosts: Vec<String>,
    /// Its serial, hex.
    pub serial: String,
    /// Its end, Unix seconds.
    pub not_after: i64,
    /// The chain and signing key (and OCSP staple).
    pub key: Arc<CertifiedKey>,
}

/// Which certificate a name is served: a zone's own file first, then an uploaded one, then
/// the edge certificate; between two of a kind, the one that lasts longer (a renewal).
type Rank = (u8, i64);

/// Certificates by hostname.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, (Rank, Arc<CertifiedKey>)>,
    wildcard: HashMap<String, (Rank, Arc<CertifiedKey>)>,
    /// For clients that send no SNI (e.g. by IP address): the first zone's certificate.
    default: Option<Arc<CertifiedKey>>,
    /// Each zone's earliest certificate end, Unix seconds.
    ends: HashMap<String, i64>,
}

fn better(
    map: &mut HashMap<String, (Rank, Arc<CertifiedKey>)>,
    name: String,
    rank: Rank,
    ck: &Arc<CertifiedKey>,
) {
    match map.get(&name) {
        Some((had, _)) if *had >= rank => {}
        _ => {
            map.insert(name, (rank, ck.clone()));
        }
    }
}

/// Whether zone `z` serves `host` (a name, or `*.x`).
fn zone_serves(z: &edgenet_config::Zone, host: &str) -> bool {
    z.hostnames
        .iter()
        .any(|p| match (p, host.strip_prefix('*')) {
            (HostPattern::Wildcard(s), Some(rest)) => s == rest,
            (_, Some(_)) => false,
            (HostPattern::Exact(n), None) => n == host,
            (HostPattern::Wildcard(s), None) => host.len() > s.len() && host.ends_with(s.as_str()),
        })
}

impl CertTable {
    /// Builds the table from a validated config whose generated certificates already exist,
    /// and the control plane's certificates (each served for the names of its zone it
    /// lists).
    pub fn new(config: &Config, control: &[ControlCert]) -> anyhow::Result<CertTable> {
        let provider = rustls::crypto::ring::default_provider();
        let mut table = CertTable::default();
        let mut ends: HashMap<&str, i64> = HashMap::new();
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
            let end = chain
                .first()
                .and_then(|c| edgenet_certs::not_after(c))
                .unwrap_or(i64::MAX);
            let rank = (3, end);
            for h in &zone.hostnames {
                match h {
                    HostPattern::Exact(n) => better(&mut table.exact, n.clone(), rank, &ck),
                    HostPattern::Wildcard(s) => better(&mut table.wildcard, s.clone(), rank, &ck),
                };
            }
            let e = ends.entry(&zone.name).or_insert(end);
            *e = (*e).min(end);
            table.default.get_or_insert(ck);
        }
        for c in control {
            let Some(zone) = config.zones.iter().find(|z| z.name == c.zone) else {
                continue;
            };
            let rank = (
                match c.source {
                    CertificateSource::Custom => 2,
                    CertificateSource::Edge => 1,
                },
                c.not_after,
            );
            let mut served = false;
            for h in c.hosts.iter().filter(|h| zone_serves(zone, h)) {
                served = true;
                match h.strip_prefix('*') {
                    Some(suffix) => better(&mut table.wildcard, suffix.to_string(), rank, &c.key),
                    None => better(&mut table.exact, h.clone(), rank, &c.key),
                }
            }
            if served {
                let e = ends.entry(&zone.name).or_insert(c.not_after);
                *e = (*e).min(c.not_after);
                table.default.get_or_insert(c.key.clone());
            }
        }
        table.ends = ends.into_iter().map(|(z, e)| (z.to_string(), e)).collect();
        Ok(table)
    }

    /// Sets `edgenet_tls_certificate_expiry_seconds` to this table's zones (once it serves).
    pub fn publish_expiry(&self, expiry: &IntGaugeVec) {
        expiry.reset();
        for (zone, end) in &self.ends {
            expiry.with_label_values(&[zone]).set(*end);
        }
    }

    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        // rustls hands over SNI lower-cased and without a trailing dot.
        if let Some((_, c)) = self.exact.get(name) {
            return Some(c.clone());
        }
        edgenet_http::host::wildcard_suffixes(name)
            .find_map(|suffix| self.wildcard.get(suffix).map(|(_, c)| c.clone()))
    }
}

/// What the control plane sealed to this PoP (`sealed`, its entry for the PoP if any), opened
/// with the PoP's `key` for `context`; or why not.
pub fn open_sealed(
    sealed: Option<&edgenet_protocol::SealedKey>,
    key: &edgenet_certs::to_pop::PopKey,
    context: &str,
) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let sealed = sealed.ok_or(
        "not sealed to this PoP yet (the control plane seals it once the PoP's key is registered)",
    )?;
    if sealed.to != edgenet_protocol::pop_key_id(&key.public()) {
        return Err(format!(
            "sealed to another key of this PoP ({}): waiting for the control plane to seal it to this one",
            sealed.to
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&sealed.sealed)
        .map_err(|_| "not base64".to_string())?;
    key.open(&bytes, context)
        .map_err(|e| format!("does not open: {e}"))
}

/// Opens a streamed certificate for PoP `pop` with its key `key`: the chain, the key sealed to
/// this PoP, and the staple, as rustls serves them; or why not.
pub fn open_control(
    id: &str,
    c: &edgenet_protocol::CertificateProvision,
    pop: &str,
    key: &edgenet_certs::to_pop::PopKey,
) -> Result<ControlCert, String> {
    use base64::Engine;
    use rustls::pki_types::pem::PemObject;
    let context = edgenet_protocol::CertificateProvision::seal_context(pop, id);
    let pem = open_sealed(c.keys.get(pop), key, &context).map_err(|e| format!("its key: {e}"))?;
    let private =
        PrivateKeyDer::from_pem_slice(&pem).map_err(|_| "the key is not PEM".to_string())?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| "the chain is not PEM".to_string())?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("the key: {e}"))?;
    let mut ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("the key is not the certificate's: {e}"))?;
    if let Some(ocsp) = &c.ocsp {
        ck.ocsp = base64::engine::general_purpose::STANDARD.decode(ocsp).ok();
    }
    Ok(ControlCert {
        id: id.to_string(),
        zone: c.zone.clone(),
        source: c.source,
        hosts: c.hosts.clone(),
        serial: c.serial.clone(),
        not_after: c.not_after,
        key: Arc::new(ck),
    })
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

    /// Replaces the table (on reload or renewal): handshakes from now on see it; open
    /// connections keep the certificate they were given.
    pub fn swap(&self, table: CertTable, expiry: &IntGaugeVec) {
        table.publish_expiry(expiry);
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
    /// The ACME challenges the control plane streamed.
    pub challenges:
        Arc<dyn Fn() -> Arc<edgenet_proxy::stages::challenge::Challenges> + Send + Sync>,
}

/// The one certificate of a TLS-ALPN-01 validation handshake.
#[derive(Debug)]
struct Validation(Arc<CertifiedKey>);

impl ResolvesServerCert for Validation {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Answers a TLS-ALPN-01 validation of `domain` (RFC 8737): a handshake with the certificate
/// carrying the key authorization's digest and `acme-tls/1`, then the connection ends.
async fn answer_tls_alpn01(
    stream: &mut L4Stream,
    domain: &str,
    key_authorization: &str,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (cert, key) = edgenet_certs::acme::tls_alpn01_certificate(domain, key_authorization)
        .map_err(|e| format!("the validation certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::try_from(key).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    // Not `with_single_cert`: it parses the certificate as a web PKI end entity, which refuses
    // the critical acmeIdentifier extension this certificate exists to carry.
    let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert)], signing));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Validation(certified)));
    config.alpn_protocols = vec![edgenet_certs::acme::ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
    let _ = tls.shutdown().await;
    Ok(())
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
        let hello = loop {
            match fingerprint(&buf) {
                Hello::Complete(h) => break Some(h),
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
        let Some(hello) = hello else {
            return Ok(());
        };
        let alpn: Vec<&[u8]> = hello.alpn.iter().map(Vec::as_slice).collect();
        if edgenet_certs::acme::offers_only_acme(&alpn) {
            let challenges = (self.challenges)();
            let domain = hello.server_name.as_deref().unwrap_or_default();
            let answer = challenges.tls_alpn01(domain).map(str::to_owned);
            let outcome = match answer {
                Some(key_authorization) => answer_tls_alpn01(stream, domain, &key_authorization)
                    .await
                    .map(|()| "answered an ACME TLS-ALPN-01 validation"),
                None => Err(format!("no TLS-ALPN-01 challenge runs for {domain:?}")),
            };
            match &outcome {
                Ok(_) => tracing::info!(%domain, "answered an ACME TLS-ALPN-01 validation"),
                Err(e) => {
                    tracing::warn!(%domain, error = %e, "an acme-tls/1 handshake not answered")
                }
            }
            // Either way the connection ends here: it carries no requests.
            return pingora_error::Error::e_explain(
                pingora_error::ErrorType::HandshakeError,
                "an acme-tls/1 connection (ACME validation) ends after its handshake",
            );
        }
        if let Some(key) = hello_key(stream.get_socket_digest()) {
            self.hellos.insert(key, hello.ja4);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(zones: &str) -> Config {
        let text =
            format!("[[listeners]]\naddress = \"127.0.0.1:1\"\nprotocol = \"http\"\n{zones}");
        let raw = edgenet_config::parse_toml(&text, "test").unwrap();
        edgenet_config::validate(&raw, Path::new("."), &edgenet_config::env::Offline).unwrap()
    }

    fn zone(name: &str, hosts: &[&str]) -> String {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
        format!(
            "[[zones]]\nname = \"{name}\"\nhostnames = [{}]\n[[zones.origins.servers]]\naddress = \"127.0.0.1:2\"\n",
            hosts.join(", ")
        )
    }

    fn cert(zone: &str, source: CertificateSource, hosts: &[&str], not_after: i64) -> ControlCert {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        let key = PrivateKeyDer::try_from(c.key_pair.serialize_der()).unwrap();
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .unwrap();
        ControlCert {
            id: format!("{zone}-{not_after}"),
            zone: zone.into(),
            source,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            serial: String::new(),
            not_after,
            key: Arc::new(CertifiedKey::new(vec![c.cert.der().clone()], signing)),
        }
    }

    fn same(a: Option<Arc<CertifiedKey>>, b: &ControlCert) -> bool {
        a.is_some_and(|a| Arc::ptr_eq(&a, &b.key))
    }

    #[test]
    fn uploads_beat_edge_certificates_renewals_beat_old_ones_and_only_the_zones_names_are_served() {
        let config =
            config(&(zone("shop", &["shop.test", "*.shop.test"]) + &zone("blog", &["blog.test"])));
        let edge = cert("shop", CertificateSource::Edge, &["shop.test"], 100);
        let renewed = cert("shop", CertificateSource::Edge, &["shop.test"], 200);
        let custom = cert("shop", CertificateSource::Custom, &["*.shop.test"], 50);
        // A certificate of shop's for blog's name, or for a zone that is gone: never served.
        let stray = cert("shop", CertificateSource::Custom, &["blog.test"], 900);
        let orphan = cert("gone", CertificateSource::Custom, &["gone.test"], 900);
        let all = [edge.clone(), custom.clone(), renewed.clone(), stray, orphan];
        let t = CertTable::new(&config, &all).unwrap();
        assert!(
            same(t.lookup(Some("shop.test")), &renewed),
            "the later end wins"
        );
        assert!(same(t.lookup(Some("a.shop.test")), &custom));
        assert!(t.lookup(Some("blog.test")).is_none());
        assert!(t.lookup(Some("gone.test")).is_none());
        let expiry = IntGaugeVec::new(prometheus::Opts::new("e", "e"), &["zone"]).unwrap();
        t.publish_expiry(&expiry);
        assert_eq!(
            expiry.with_label_values(&["shop"]).get(),
            50,
            "the earliest served"
        );
        assert!(expiry.get_metric_with_label_values(&["blog"]).is_ok());

        let upload = cert("shop", CertificateSource::Custom, &["shop.test"], 10);
        let t = CertTable::new(&config, &[renewed.clone(), upload.clone()]).unwrap();
        assert!(
            same(t.lookup(Some("shop.test")), &upload),
            "an upload before an edge certificate"
        );
        assert!(
            same(t.lookup(None), &renewed) || same(t.lookup(None), &upload),
            "a default without SNI"
        );
    }

    #[test]
    fn a_streamed_certificate_opens_only_with_its_own_pops_key() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let c = rcgen::generate_simple_self_signed(vec!["shop.test".to_string()]).unwrap();
        let key = edgenet_certs::to_pop::PopKey::generate().unwrap();
        let other = edgenet_certs::to_pop::PopKey::generate().unwrap();
        let context = edgenet_protocol::CertificateProvision::seal_context("p1", "c1");
        let sealed = edgenet_certs::to_pop::seal_to(
            &key.public(),
            c.key_pair.serialize_pem().as_bytes(),
            &context,
        )
        .unwrap();
        let mut p = edgenet_protocol::CertificateProvision {
            zone: "shop".into(),
            source: CertificateSource::Custom,
            hosts: vec!["shop.test".into()],
            chain: c.cert.pem(),
            serial: "01".into(),
            not_after: 1,
            keys: Default::default(),
            ocsp: Some(b64.encode(b"staple")),
        };
        let e = open_control("c1", &p, "p1", &key).unwrap_err();
        assert!(e.contains("not sealed to this PoP yet"), "{e}");
        p.keys.insert(
            "p1".into(),
            edgenet_protocol::SealedKey {
                to: edgenet_protocol::pop_key_id(&key.public()),
                sealed: b64.encode(&sealed),
            },
        );
        let opened = open_control("c1", &p, "p1", &key).unwrap();
        assert_eq!(opened.key.ocsp.as_deref(), Some(&b"staple"[..]));
        let e = open_control("c1", &p, "p1", &other).unwrap_err();
        assert!(e.contains("another key of this PoP"), "{e}");
        let e = open_control("c2", &p, "p1", &key).unwrap_err();
        assert!(
            e.contains("does not open"),
            "sealed for another certificate: {e}"
        );
    }
}
