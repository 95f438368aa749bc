//! The userspace dataplane's devices: a TUN device per tunnel (the kernel sees the tunnel's
//! inner addresses on it and routes what it sends the customer into it), and raw IPv4 sockets:
//! one of protocol 47 that receives every GRE packet the node gets and sends ours with the
//! outer header we build (`IP_HDRINCL`: our source, the tunnel's TTL), and one of ICMP that
//! receives probes coming back outside the tunnel.
//!
//! Reads wait at most [`WAIT`], so the threads that own these notice when they are to stop.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The longest a read waits.
pub const WAIT: Duration = Duration::from_millis(200);

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A TUN device carrying bare IP packets (no packet information header). It goes when the
/// last descriptor of it closes, so a PoP that dies leaves none behind.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Makes TUN device `name` (at most 15 bytes).
    pub fn open(name: &str) -> io::Result<Tun> {
        if name.is_empty() || name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} is not 1 to 15 bytes"),
            ));
        }
        // Non-blocking: the reader drains what is queued after one poll, without polling again.
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        // struct ifreq: the name (16 bytes with its NUL), then the flags.
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        req[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        set_iff(&file, &mut req)?;
        Ok(Tun {
            file,
            name: name.to_string(),
        })
    }

    /// Its interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One packet the kernel sent into the device (`WouldBlock` when none is queued).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Hands the kernel one packet, as if it arrived on the device.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// The device, for poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `TUNSETIFF` on `file` with the `struct ifreq` in `req`.
#[allow(unsafe_code)]
fn set_iff(file: &File, req: &mut [u8; 40]) -> io::Result<()> {
    // SAFETY: TUNSETIFF reads and writes one struct ifreq (40 bytes on Linux), which `req`
    // holds; the descriptor is open for the call's length.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw IPv4 socket.
#[derive(Debug)]
pub struct Raw {
    socket: Socket,
}

impl Raw {
    /// A socket of IP protocol `protocol` whose reads wait at most [`WAIT`]; `hdrincl`: what
    /// it sends starts with our own IPv4 header.
    pub fn open(protocol: i32, hdrincl: bool) -> io::Result<Raw> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(protocol)))?;
        if hdrincl {
            socket.set_header_included_v4(true)?;
        }
        socket.set_read_timeout(Some(WAIT))?;
        // Room for bursts: a tunnel at 1 Gbit/s brings ~80,000 packets a second. Past the
        // system's rmem_max/wmem_max only with CAP_NET_ADMIN (the *FORCE options).
        use nix::sys::socket::{setsockopt, sockopt};
        if setsockopt(&socket, sockopt::RcvBufForce, &(8 << 20)).is_err() {
            socket.set_recv_buffer_size(8 << 20)?;
        }
        if setsockopt(&socket, sockopt::SndBufForce, &(8 << 20)).is_err() {
            socket.set_send_buffer_size(8 << 20)?;
        }
        Ok(Raw { socket })
    }

    /// One packet (with its IPv4 header); `WouldBlock` or `TimedOut` after [`WAIT`].
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.socket).read(buf)
    }

    /// Sends `packet` to `dst`.
    pub fn send_to(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
        self.socket
            .send_to(packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))
    }
}

/// Waits until one of `fds` is readable (at most [`WAIT`]); the indexes of those that are.
pub fn readable(fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<Vec<usize>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut polls: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    match poll(&mut polls, PollTimeout::from(WAIT.as_millis() as u16)) {
        Err(nix::errno::Errno::EINTR) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(polls
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .map(|(i, _)| i)
            .collect()),
    }
}

/// Whether a read error only says nothing came in time.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tun_device_needs_a_short_name() {
        let e = Tun::open("a-name-longer-than-15").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
