//! Sockets for BGP and BFD: TCP with MD5 signatures (RFC 2385), listeners per family, and
//! the hop limit of single-hop BFD (RFC 5881 section 5).
//!
//! This is the crate's only `unsafe`: Linux's `TCP_MD5SIG` has no safe wrapper in `libc`,
//! `socket2` or `nix`, so the option is set with `setsockopt` on a struct laid out as the
//! kernel's `struct tcp_md5sig`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Longest MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY: usize = 80;

/// `struct tcp_md5sig` from `linux/tcp.h`: a `sockaddr_storage`, flags, prefix length, key
/// length, interface index, key.
#[repr(C, align(8))]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MD5_MAX_KEY],
}

/// The bytes of a `sockaddr_in` / `sockaddr_in6` for `addr`, port 0, in a `sockaddr_storage`.
fn sockaddr_bytes(addr: IpAddr) -> [u8; 128] {
    let mut b = [0u8; 128];
    match addr {
        IpAddr::V4(a) => {
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[8..24].copy_from_slice(&a.octets());
        }
    }
    b
}

/// Signs every segment to and from `peer` on `socket` with `key` (TCP MD5, RFC 2385). On a
/// listening socket it applies to connections accepted from `peer`. An IPv4 peer on an IPv6
/// socket is given as its mapped address.
pub fn set_md5(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 key is {} bytes, over {MD5_MAX_KEY}", key.len()),
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_bytes(peer),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY],
    };
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a live, fully initialised value laid out as `struct tcp_md5sig`, and
    // the length passed is its size; the kernel only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-blocking TCP listener on `addr` (IPv6 sockets are IPv6 only, so `0.0.0.0` and `::`
/// can both listen), with MD5 keys for the given peers.
pub fn listener(addr: SocketAddr, md5: &[(IpAddr, &[u8])]) -> io::Result<tokio::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    for (peer, key) in md5 {
        if peer.is_ipv4() == addr.is_ipv4() {
            set_md5(&s, *peer, key)?;
        }
    }
    s.bind(&addr.into())?;
    s.listen(64)?;
    s.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// Connects to `peer`, from `local` if given, with an MD5 key if given.
pub async fn connect(
    peer: SocketAddr,
    local: Option<IpAddr>,
    md5: Option<&[u8]>,
) -> io::Result<tokio::net::TcpStream> {
    let s = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(key) = md5 {
        set_md5(&s, peer.ip(), key)?;
    }
    if let Some(l) = local {
        s.bind(&SocketAddr::new(l, 0).into())?;
    }
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    let std: std::net::TcpStream = s.into();
    tokio::net::TcpSocket::from_std_stream(std)
        .connect(peer)
        .await
}

/// A UDP socket for single-hop BFD: bound to `local`, sending with TTL / hop limit 255 as
/// RFC 5881 asks, so a receiver that checks the TTL accepts it.
pub fn bfd_socket(local: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&local.into())?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}
