//! The userspace dataplane's devices: a TUN device per tunnel (the kernel sees the tunnel's
//! inner addresses on it and routes what it sends the customer into it), and raw IPv4 sockets:
//! one of protocol 47 that receives every GRE packet the node gets and sends ours with the
//! outer header we build (`IP_HDRINCL`: our source, the tunnel's TTL), and one of ICMP that
//! receives probes coming back outside the tunnel. For a tagged port: a TAP device (the
//! untagged side of one VLAN, whole Ethernet frames) and a [`Packet`] socket on the port
//! itself.
//!
//! Reads wait at most [`WAIT`], so the threads that own these notice when they are to stop.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::{setsockopt_impl, sockopt_impl};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The longest a read waits.
pub const WAIT: Duration = Duration::from_millis(200);

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A TUN device carrying bare IP packets (no packet information header), or a TAP device
/// carrying Ethernet frames. It goes when the last descriptor of it closes, so a PoP that dies
/// leaves none behind.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Makes TUN device `name` (at most 15 bytes).
    pub fn open(name: &str) -> io::Result<Tun> {
        Tun::make(name, IFF_TUN)
    }

    /// Makes TAP device `name` (at most 15 bytes).
    pub fn tap(name: &str) -> io::Result<Tun> {
        Tun::make(name, IFF_TAP)
    }

    fn make(name: &str, kind: libc::c_short) -> io::Result<Tun> {
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
        req[16..18].copy_from_slice(&(kind | IFF_NO_PI).to_ne_bytes());
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

    /// Marks what it sends with firewall mark `mark` (`SO_MARK`: policy rules route it).
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        nix::sys::socket::setsockopt(&self.socket, nix::sys::socket::sockopt::Mark, &mark)
            .map_err(io::Error::from)
    }

    /// Sends `packet` to `dst`.
    pub fn send_to(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
        self.socket
            .send_to(packet, &SockAddr::from(SocketAddrV4::new(dst, 0)))
    }
}

/// A packet socket on one interface (`AF_PACKET`, every EtherType): whole frames in and out,
/// with the 802.1Q tag the kernel took off a received frame reported beside it
/// (`PACKET_AUXDATA`).
#[derive(Debug)]
pub struct Packet {
    socket: Socket,
}

sockopt_impl!(
    /// `PACKET_AUXDATA`: a control message with each frame read.
    PacketAuxdata,
    SetOnly,
    libc::SOL_PACKET,
    libc::PACKET_AUXDATA,
    bool
);

/// A frame read from a [`Packet`] socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its length in the buffer.
    pub len: usize,
    /// The tag's TCI when the kernel took one off (`TP_STATUS_VLAN_VALID`).
    pub tci: Option<u16>,
    /// Whether it is one this host sent (a packet socket sees those too).
    pub outgoing: bool,
}

impl Packet {
    /// A packet socket bound to the interface of index `ifindex`, non-blocking.
    pub fn open(ifindex: u32) -> io::Result<Packet> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(all))),
        )?;
        nix::sys::socket::setsockopt(&socket, PacketAuxdata, &true)?;
        socket.bind(&link_addr(ifindex, all))?;
        socket.set_nonblocking(true)?;
        if nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20))
            .is_err()
        {
            socket.set_recv_buffer_size(4 << 20)?;
        }
        Ok(Packet { socket })
    }

    /// One frame (`WouldBlock` when none is queued).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, LinkAddr, MsgFlags};
        let mut cmsg = nix::cmsg_space!(libc::tpacket_auxdata);
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = recvmsg::<LinkAddr>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_TRUNC,
        )?;
        let mut tci = None;
        for c in msg.cmsgs()? {
            let ControlMessageOwned::Unknown(u) = c else {
                continue;
            };
            let aux = &u.data_bytes;
            // struct tpacket_auxdata: tp_status at 0, tp_vlan_tci at 16.
            if u.cmsg_header.cmsg_level == libc::SOL_PACKET
                && u.cmsg_header.cmsg_type == libc::PACKET_AUXDATA
                && aux.len() >= 18
            {
                let status = u32::from_ne_bytes([aux[0], aux[1], aux[2], aux[3]]);
                if status & libc::TP_STATUS_VLAN_VALID != 0 {
                    tci = Some(u16::from_ne_bytes([aux[16], aux[17]]));
                }
            }
        }
        let outgoing = msg
            .address
            .is_some_and(|a| a.pkttype() == libc::PACKET_OUTGOING);
        Ok(Received {
            len: msg.bytes,
            tci,
            outgoing,
        })
    }

    /// Sends one whole frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.socket.send(frame)
    }

    /// The socket, for poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The `sockaddr_ll` of interface `ifindex` for EtherType `protocol` (network order).
#[allow(unsafe_code)]
fn link_addr(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: the storage is large enough and aligned for any socket address, so for a
    // sockaddr_ll, and zeroed is a valid sockaddr_ll; the length given is that struct's.
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = protocol;
        ll.sll_ifindex = ifindex as i32;
        SockAddr::new(
            storage,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
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
