//! The HTTP engine prototype of issue 23 on hyper 1.x: a reverse proxy with one HTTP/1.1
//! listener and one origin, no edge logic, as `plain_pingora` is for Pingora. Each thread runs
//! a current-thread runtime with its own listener (`SO_REUSEPORT`) and its own pool of idle
//! upstream connections (no lock between threads), and adds the headers the benchmark's proxies
//! add (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id), so `bench/engines.sh` compares the
//! engines doing the same work. With a TLS address, certificate and key it also listens for
//! TLS (rustls with *ring*, as edgenet) with ALPN `h2` and `http/1.1`; HTTP/2 requests go to
//! the origin over the same HTTP/1.1 pool.
//!
//! Usage: plain_hyper LISTEN_ADDR ORIGIN_ADDR [THREADS [TLS_ADDR CERT_PEM KEY_PEM]]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// This thread's idle upstream connections.
type Pool = Rc<RefCell<Vec<SendRequest<Incoming>>>>;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: plain_hyper LISTEN_ADDR ORIGIN_ADDR [THREADS [TLS_ADDR CERT_PEM KEY_PEM]]"
        );
        std::process::exit(2);
    }
    let listen: SocketAddr = args[0].parse().expect("LISTEN_ADDR");
    let origin: SocketAddr = args[1].parse().expect("ORIGIN_ADDR");
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(1usize);
    let tls = match &args[3.min(args.len())..] {
        [addr, cert, key] => Some((addr.parse().expect("TLS_ADDR"), tls_config(cert, key))),
        _ => None,
    };
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let tls = tls.clone();
            std::thread::spawn(move || serve(listen, origin, tls))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.bind(addr)?;
    s.listen(4096)
}

/// A TLS 1.2/1.3 server configuration from PEM files, offering `h2` and `http/1.1`.
fn tls_config(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).expect("CERT_PEM"),
    ))
    .collect::<Result<Vec<_>, _>>()
    .expect("certificates");
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).expect("KEY_PEM"),
    ))
    .expect("key")
    .expect("a private key");
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("certificate and key");
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Runs hyper's HTTP/2 connections' tasks on this thread.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

fn serve(
    listen: SocketAddr,
    origin: SocketAddr,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pool: Pool = Rc::default();
        if let Some((addr, config)) = tls {
            let tls_listener = listener(addr).expect("listen TLS");
            tokio::task::spawn_local(serve_tls(tls_listener, config, origin, pool.clone()));
        }
        let listener = listener(listen).expect("listen");
        let mut ids = 0u64;
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let pool = pool.clone();
            let seed = ids;
            ids += 1 << 20;
            tokio::task::spawn_local(async move {
                let n = std::cell::Cell::new(seed);
                let service = hyper::service::service_fn(move |req| {
                    n.set(n.get() + 1);
                    proxy(req, peer, origin, pool.clone(), n.get())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    origin: SocketAddr,
    pool: Pool,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut ids = 1u64 << 63;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, pool) = (acceptor.clone(), pool.clone());
        let seed = ids;
        ids += 1 << 20;
        tokio::task::spawn_local(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let n = std::cell::Cell::new(seed);
            let service = hyper::service::service_fn(move |req| {
                n.set(n.get() + 1);
                proxy(req, peer, origin, pool.clone(), n.get())
            });
            let io = TokioIo::new(tls);
            let _ = if h2 {
                hyper::server::conn::http2::Builder::new(LocalExec)
                    .max_concurrent_streams(128)
                    .serve_connection(io, service)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
            };
        });
    }
}

async fn proxy(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    origin: SocketAddr,
    pool: Pool,
    n: u64,
) -> Result<Response<Incoming>, Error> {
    let id = HeaderValue::from_str(&format!("{n:016x}"))?;
    if req.version() == http::Version::HTTP_2 {
        // To the HTTP/1.1 origin: origin-form target, the authority as Host.
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *req.uri_mut() = path.parse()?;
        *req.version_mut() = http::Version::HTTP_11;
        if let Some(a) = authority {
            req.headers_mut().insert(HOST, HeaderValue::from_str(&a)?);
        }
    }
    let headers = req.headers_mut();
    headers.remove(CONNECTION);
    let ip = HeaderValue::from_str(&peer.ip().to_string())?;
    headers.append(X_FORWARDED_FOR, ip);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    headers.insert(X_REQUEST_ID, id.clone());
    if !headers.contains_key(HOST) {
        headers.insert(HOST, HeaderValue::from_str(&origin.to_string())?);
    }
    let mut sender = take(&pool, origin).await?;
    let mut resp = sender.send_request(req).await?;
    // The connection goes back now; the next request waits for this body only if it takes it.
    pool.borrow_mut().push(sender);
    resp.headers_mut().insert(X_REQUEST_ID, id);
    Ok(resp)
}

/// An idle connection to the origin from this thread's pool, or a new one.
async fn take(pool: &Pool, origin: SocketAddr) -> Result<SendRequest<Incoming>, Error> {
    {
        let mut idle = pool.borrow_mut();
        idle.retain(|s| !s.is_closed());
        if let Some(i) = idle.iter().position(|s| s.is_ready()) {
            return Ok(idle.swap_remove(i));
        }
    }
    let stream = tokio::net::TcpStream::connect(origin).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
