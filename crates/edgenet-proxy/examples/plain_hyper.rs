//! The HTTP engine prototype of issue 23 on hyper 1.x: a reverse proxy with one HTTP/1.1
//! listener and one origin, no edge logic, as `plain_pingora` is for Pingora. Each thread runs
//! a current-thread runtime with its own listener (`SO_REUSEPORT`) and its own pool of idle
//! upstream connections (no lock between threads), and adds the headers the benchmark's proxies
//! add (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id), so `bench/engines.sh` compares the
//! engines doing the same work.
//!
//! Usage: plain_hyper LISTEN_ADDR ORIGIN_ADDR [THREADS]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

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
    let mut args = std::env::args().skip(1);
    let (listen, origin, threads) = match (args.next(), args.next(), args.next()) {
        (Some(l), Some(o), t) => (l, o, t.and_then(|t| t.parse().ok()).unwrap_or(1usize)),
        _ => {
            eprintln!("usage: plain_hyper LISTEN_ADDR ORIGIN_ADDR [THREADS]");
            std::process::exit(2);
        }
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR");
    let origin: SocketAddr = origin.parse().expect("ORIGIN_ADDR");
    let handles: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || serve(listen, origin)))
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

fn serve(listen: SocketAddr, origin: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = listener(listen).expect("listen");
        let pool: Pool = Rc::default();
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

async fn proxy(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    origin: SocketAddr,
    pool: Pool,
    n: u64,
) -> Result<Response<Incoming>, Error> {
    let id = HeaderValue::from_str(&format!("{n:016x}"))?;
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
