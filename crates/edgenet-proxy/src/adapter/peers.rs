//! Upstream peers in Pingora's terms: an origin server with its zone's timeouts and TLS
//! settings, and another PoP over the mutually authenticated backbone. What Pingora needs in
//! its own types (the origin CA, the backbone identity) is built once and kept here or in the
//! zone's engine slot.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pingora_core::protocols::{SocketDigest, ALPN};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509};

use crate::backbone::{pop_dns_name, BackboneFiles};
use crate::core::HelloKey;
use crate::snapshot::ZoneRuntime;

/// The engine's view of the backbone identity, set once when the node has one.
#[derive(Default)]
pub struct Peers {
    backbone: OnceLock<BackboneTls>,
}

impl Peers {
    /// Loads the PoP's backbone identity (once; later calls keep the first).
    pub fn set_backbone(&self, files: &BackboneFiles) -> anyhow::Result<()> {
        let tls = BackboneTls::load(files)?;
        let _ = self.backbone.set(tls);
        Ok(())
    }

    /// Whether this PoP has a backbone identity (without one there are no tiers or relays).
    pub fn has_backbone(&self) -> bool {
        self.backbone.get().is_some()
    }

    /// A peer for PoP `name` at `address` over the backbone, when this PoP has an identity.
    pub fn backbone(&self, name: &str, address: SocketAddr) -> Option<HttpPeer> {
        Some(self.backbone.get()?.peer(name, address))
    }
}

/// What the client side of the backbone needs: our certificate and key, and the CA to verify
/// peers with.
struct BackboneTls {
    client: Arc<CertKey>,
    ca: Arc<[WrappedX509]>,
}

fn wrap(der: &[u8]) -> WrappedX509 {
    WrappedX509::new(der.to_vec(), |raw| {
        pingora_core::utils::tls::parse_x509(raw)
    })
}

impl BackboneTls {
    fn load(files: &BackboneFiles) -> anyhow::Result<BackboneTls> {
        let certs = edgenet_config::read_certs(&files.cert)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert.display()))?;
        let key = edgenet_config::read_key(&files.key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.key.display()))?;
        let ca = edgenet_config::read_certs(&files.ca)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
        let client = CertKey::new(
            certs.iter().map(|c| c.to_vec()).collect(),
            key.secret_der().to_vec(),
        );
        let ca: Vec<WrappedX509> = ca.iter().map(|c| wrap(c)).collect();
        Ok(BackboneTls {
            client: Arc::new(client),
            ca: Arc::from(ca.into_boxed_slice()),
        })
    }

    /// TLS verified against the backbone CA for the PoP's name, our certificate offered,
    /// HTTP/2 preferred.
    fn peer(&self, name: &str, address: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(address, true, pop_dns_name(name));
        peer.client_cert_key = Some(self.client.clone());
        peer.options.ca = Some(self.ca.clone());
        peer.options.alpn = ALPN::H2H1;
        peer.options.connection_timeout = Some(Duration::from_secs(1));
        peer.options.total_connection_timeout = Some(Duration::from_secs(2));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }
}

/// The zone's origin CA in Pingora's type, made on first use and kept with the zone.
fn origin_ca(zone: &ZoneRuntime) -> Option<Arc<[WrappedX509]>> {
    let der = zone.origin_ca.as_ref()?;
    let kept = zone.engine.get_or_init(|| {
        let wrapped: Vec<WrappedX509> = der.iter().map(|c| wrap(c)).collect();
        let ca: Arc<[WrappedX509]> = Arc::from(wrapped.into_boxed_slice());
        Box::new(ca)
    });
    kept.downcast_ref::<Arc<[WrappedX509]>>().cloned()
}

/// The peer for origin server `idx` of `zone`, with the zone's timeouts and TLS settings.
/// `host` is the Host sent upstream; without a configured SNI its name is the SNI.
pub fn origin_peer(zone: &ZoneRuntime, idx: usize, host: Option<&str>) -> HttpPeer {
    let origins = &zone.config.origins;
    let sni = match &origins.tls {
        Some(t) => t.sni.clone().unwrap_or_else(|| {
            host.map(|h| edgenet_http::host::host_without_port(h).to_string())
                .unwrap_or_default()
        }),
        None => String::new(),
    };
    let address = zone.pool.members()[idx].server.address;
    let mut peer = HttpPeer::new(address, origins.tls.is_some(), sni);
    peer.options.connection_timeout = Some(origins.connect_timeout);
    peer.options.total_connection_timeout = Some(origins.connect_timeout);
    peer.options.read_timeout = Some(origins.read_timeout);
    peer.options.write_timeout = Some(origins.read_timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if let Some(t) = &origins.tls {
        peer.options.verify_cert = t.verify;
        peer.options.verify_hostname = t.verify;
        peer.options.ca = origin_ca(zone);
    }
    peer
}

/// The key of a connection in `Core::hellos`, from its socket digest.
pub fn hello_key(digest: Option<Arc<SocketDigest>>) -> Option<HelloKey> {
    let d = digest?;
    let peer = *d.peer_addr()?.as_inet()?;
    let local = *d.local_addr()?.as_inet()?;
    Some((peer, local))
}
