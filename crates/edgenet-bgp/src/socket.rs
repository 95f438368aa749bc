//! Sockets for BGP and BFD: TCP with MD5 signatures (RFC 2385), listeners per family, and
//! the TTL rules of single-hop BFD (RFC 5881 section 5: send with 255, accept only 255).
//!
//! This is the crate's only `unsafe`, in three small blocks: Linux's `TCP_MD5SIG`,
//! `IP_RECVTTL` and `IPV6_RECVHOPLIMIT` have no safe setter in `libc`, `socket2` or `nix`, so
//! they are set with `setsockopt`; and `recvmsg` (for the TTL of each BFD packet) fills
//! `MaybeUninit` buffers that are read back after the call.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

pub use crate::config::MD5_MAX_KEY;

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

fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` and the length passed is its size.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket for single-hop BFD: bound to `local`, sending with TTL / hop limit 255 as
/// RFC 5881 asks, and told to report each datagram's TTL so [`recv_with_ttl`] can check it.
pub fn bfd_socket(local: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_unicast_hops_v6(255)?;
        set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    } else {
        s.set_ttl_v4(255)?;
        set_int(&s, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&local.into())?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Receives one datagram with the TTL (IPv4) or hop limit (IPv6) it arrived with, which RFC
/// 5881 section 5 requires to be 255 for single-hop BFD (a packet from further away is forged).
pub async fn recv_with_ttl(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    loop {
        sock.readable().await?;
        match sock.try_io(tokio::io::Interest::READABLE, || recvmsg_ttl(sock, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recvmsg_ttl(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    use std::mem::MaybeUninit;
    let s = socket2::SockRef::from(sock);
    let mut data = [MaybeUninit::new(0u8); 512];
    let mut control = [MaybeUninit::new(0u8); 128];
    let mut addr = socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut bufs = [socket2::MaybeUninitSlice::new(&mut data)];
    let mut msg = socket2::MsgHdrMut::new()
        .with_addr(&mut addr)
        .with_buffers(&mut bufs)
        .with_control(&mut control);
    let n = s.recvmsg(&mut msg, 0)?;
    let control_len = msg.control_len();
    // SAFETY: both arrays were fully initialised (zeros) before the call; the kernel only
    // overwrote bytes with other bytes.
    #[allow(unsafe_code)]
    let (data, control) = unsafe {
        (
            data.map(|b| b.assume_init()),
            control.map(|b| b.assume_init()),
        )
    };
    let n = n.min(buf.len()).min(data.len());
    buf[..n].copy_from_slice(&data[..n]);
    let from = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram without an IP source"))?;
    Ok((
        n,
        from,
        ttl_from_cmsgs(&control[..control_len.min(control.len())]),
    ))
}

/// Finds IP_TTL or IPV6_HOPLIMIT among the control messages (`struct cmsghdr`: length as a
/// `size_t`, level and type as `int`s, data aligned to `size_t`).
fn ttl_from_cmsgs(mut c: &[u8]) -> Option<u8> {
    const W: usize = std::mem::size_of::<usize>();
    let header = (W + 8).div_ceil(W) * W;
    while c.len() >= header {
        let len = usize::from_ne_bytes(c[..W].try_into().ok()?);
        let level = i32::from_ne_bytes(c[W..W + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(c[W + 4..W + 8].try_into().ok()?);
        if len < header || len > c.len() {
            return None;
        }
        if (level, kind) == (libc::IPPROTO_IP, libc::IP_TTL)
            || (level, kind) == (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
        {
            let v = c.get(header..header + 4)?;
            return u8::try_from(i32::from_ne_bytes(v.try_into().ok()?)).ok();
        }
        c = c.get(len.div_ceil(W) * W..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn received_datagrams_carry_their_ttl() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let rx = bfd_socket(local.parse().unwrap()).unwrap();
            let to = rx.local_addr().unwrap();
            let tx = Socket::new(Domain::for_address(to), Type::DGRAM, None).unwrap();
            for ttl in [64u8, 255] {
                if to.is_ipv6() {
                    tx.set_unicast_hops_v6(u32::from(ttl)).unwrap();
                } else {
                    tx.set_ttl_v4(u32::from(ttl)).unwrap();
                }
                tx.send_to(b"bfd", &to.into()).unwrap();
                let mut buf = [0u8; 64];
                let (n, _, got) = recv_with_ttl(&rx, &mut buf).await.unwrap();
                assert_eq!((&buf[..n], got), (&b"bfd"[..], Some(ttl)), "{local}");
            }
        }
    }
}
