//! A CNI port's kernel side through netlink (rtnetlink): the point-to-point addresses and the
//! MTU on the interface a site's port maps to, the interface's link state (read, and followed
//! through the kernel's link notifications), and the routes a peering CNI's session accepted,
//! in the routing table the node config names (marked `proto bgp`). Only what a CNI asked for
//! is added or removed: other addresses on the interface are left alone. The addresses a CNI
//! gets carry the address protocol [`ADDRESS_PROTO`] (`IFA_PROTO`, Linux 5.18), so a PoP that
//! restarts finds the ones it left, whichever CNIs went meanwhile ([`Netlink::remove_owned`]).

use std::net::IpAddr;

use futures_util::{Stream, StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressProtocol};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, State};
use rtnetlink::packet_route::route::{RouteAttribute, RouteProtocol};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// The address protocol of CNI addresses (`ip addr` shows `proto 0xed`).
pub const ADDRESS_PROTO: u8 = 0xed;

/// A netlink failure, naming the interface.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The interface does not exist.
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    /// The kernel refused.
    #[error("interface {interface:?}: {what}: {source}")]
    Kernel {
        /// The interface.
        interface: String,
        /// What was asked.
        what: String,
        /// What netlink said.
        source: rtnetlink::Error,
    },
    /// A route the kernel refused, or one that cannot be written.
    #[error("route: {0}")]
    Route(String),
    /// No netlink socket.
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// An interface as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Administratively up.
    pub admin_up: bool,
    /// The carrier is up (operationally up).
    pub carrier: bool,
    /// Its MTU.
    pub mtu: u32,
    /// Its hardware address (empty for a device without one, such as a TUN device).
    pub mac: Vec<u8>,
    /// Its addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
}

/// The route netlink socket of this process's network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the socket; its connection runs on the current tokio runtime.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    fn kernel(
        interface: &str,
        what: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> NetlinkError + '_ {
        let what = what.into();
        move |source| NetlinkError::Kernel {
            interface: interface.to_string(),
            what,
            source,
        }
    }

    /// The kernel's link message of the interface named `name`.
    async fn link_message(
        &self,
        name: &str,
    ) -> Result<rtnetlink::packet_route::link::LinkMessage, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(NetlinkError::NoInterface(name.to_string())),
            // The kernel answers a missing name with ENODEV.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => {
                Err(NetlinkError::NoInterface(name.to_string()))
            }
            Err(e) => Err(Self::kernel(name, "get link")(e)),
        }
    }

    /// The interface named `name`.
    pub async fn link(&self, name: &str) -> Result<Link, NetlinkError> {
        let msg = self.link_message(name).await?;
        let index = msg.header.index;
        let mut link = Link {
            index,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            carrier: msg.header.flags.contains(LinkFlags::LowerUp),
            mtu: 0,
            mac: Vec::new(),
            addresses: Vec::new(),
        };
        for a in &msg.attributes {
            match a {
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(mac) => link.mac = mac.clone(),
                LinkAttribute::OperState(State::Up) => link.carrier = true,
                _ => {}
            }
        }
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(Self::kernel(name, "get addresses"))?
        {
            let len = a.header.prefix_len;
            for attr in &a.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    link.addresses.push((*ip, len));
                }
            }
        }
        Ok(link)
    }

    /// Puts `addresses` on the interface (kept if there), sets its MTU and brings it up.
    pub async fn configure(
        &self,
        name: &str,
        addresses: &[(IpAddr, u8)],
        mtu: u32,
    ) -> Result<Link, NetlinkError> {
        let link = self.link(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link.index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(Self::kernel(name, format!("set MTU {mtu} and up")))?;
        for (ip, len) in addresses {
            if link.addresses.contains(&(*ip, *len)) {
                continue;
            }
            let mut add = self.handle.address().add(link.index, *ip, *len).replace();
            add.message_mut()
                .attributes
                .push(AddressAttribute::Protocol(AddressProtocol::Other(
                    ADDRESS_PROTO,
                )));
            add.execute()
                .await
                .map_err(Self::kernel(name, format!("add {ip}/{len}")))?;
        }
        self.link(name).await
    }

    /// Deletes the interface named `name` (a device we made); a missing one is gone already.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let index = match self.link_message(name).await {
            Ok(m) => m.header.index,
            Err(NetlinkError::NoInterface(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(Self::kernel(name, "delete"))
    }

    /// Gives the interface named `name` the hardware address `mac`.
    pub async fn set_mac(&self, name: &str, mac: &[u8]) -> Result<(), NetlinkError> {
        let link = self.link_message(name).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(link.header.index)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(Self::kernel(name, "set the hardware address"))
    }

    /// Takes off every interface the addresses marked [`ADDRESS_PROTO`] (what CNIs were given,
    /// by this run or one before); how many.
    pub async fn remove_owned(&self) -> Result<usize, NetlinkError> {
        let mut msgs = self.handle.address().get().execute();
        let mut doomed = Vec::new();
        while let Some(a) = msgs
            .try_next()
            .await
            .map_err(Self::kernel("*", "get addresses"))?
        {
            let ours = a.attributes.iter().any(|attr| {
                matches!(attr, AddressAttribute::Protocol(p) if u8::from(*p) == ADDRESS_PROTO)
            });
            if ours {
                doomed.push(a);
            }
        }
        let n = doomed.len();
        for a in doomed {
            self.handle
                .address()
                .del(a)
                .execute()
                .await
                .map_err(Self::kernel("*", "delete an address"))?;
        }
        Ok(n)
    }

    /// The names of interfaces the kernel announces a change of (carrier, flags, MTU), as
    /// they happen: a socket of its own, joined to the link notification group.
    pub fn link_events() -> Result<impl Stream<Item = String>, NetlinkError> {
        let (mut connection, _, messages) = rtnetlink::new_connection()?;
        let group = rtnetlink::sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
        use rtnetlink::sys::AsyncSocket;
        connection.socket_mut().socket_mut().bind(&group)?;
        tokio::spawn(connection);
        Ok(messages.filter_map(|(m, _)| async move {
            match m.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
                ) => l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }),
                _ => None,
            }
        }))
    }

    fn route(
        prefix: (IpAddr, u8),
        table: u32,
    ) -> Result<RouteMessageBuilder<IpAddr>, NetlinkError> {
        let b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(prefix.0, prefix.1)
            .map_err(|e| NetlinkError::Route(e.to_string()))?;
        Ok(b.table_id(table).protocol(RouteProtocol::Bgp))
    }

    /// Puts (`add`) or takes out the route of `dst` onto device `dev` in routing table
    /// `table` (`ip route replace DST dev DEV table TABLE proto static`; 254 is the main
    /// table); a route already gone is no error.
    pub async fn device_route(
        &self,
        dst: (IpAddr, u8),
        dev: &str,
        table: u32,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let index = self.link(dev).await?.index;
        let m = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.0, dst.1)
            .map_err(|e| NetlinkError::Route(e.to_string()))?
            .output_interface(index)
            .table_id(table)
            .protocol(RouteProtocol::Static)
            .build();
        self.put_route(m, add, || {
            format!("{}/{} dev {dev} table {table}", dst.0, dst.1)
        })
        .await
    }

    /// Replaces (`add`) or deletes route `m`; a route already gone is no error, and `what`
    /// names it in any other.
    async fn put_route(
        &self,
        m: rtnetlink::packet_route::route::RouteMessage,
        add: bool,
        what: impl FnOnce() -> String,
    ) -> Result<(), NetlinkError> {
        let done = if add {
            self.handle.route().add(m).replace().execute().await
        } else {
            self.handle.route().del(m).execute().await
        };
        match done {
            Ok(()) => Ok(()),
            // ESRCH: not there.
            Err(rtnetlink::Error::NetlinkError(e)) if !add && e.raw_code() == -3 => Ok(()),
            Err(e) => Err(NetlinkError::Route(format!(
                "{} {}: {e}",
                if add { "add" } else { "delete" },
                what()
            ))),
        }
    }

    /// Puts (`add`) or takes out the default route of routing table `table` through
    /// `gateway` on device `dev` (`ip route replace default via GATEWAY dev DEV onlink table
    /// TABLE proto static`): where the packets a CNI delivers go. A route already gone is no error.
    pub async fn gateway_table(
        &self,
        table: u32,
        gateway: std::net::Ipv4Addr,
        dev: &str,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let index = self.link(dev).await?.index;
        let m = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(std::net::Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gateway)
            .output_interface(index)
            .onlink()
            .table_id(table)
            .protocol(RouteProtocol::Static)
            .build();
        self.put_route(m, add, || {
            format!("default via {gateway} dev {dev} onlink table {table}")
        })
        .await
    }

    /// Puts (`add`) or takes out the IPv4 policy rules of a delivery port: `priority: fwmark
    /// MARK lookup MARK` and, one after it, `fwmark MARK unreachable`, so a marked packet never
    /// falls through to the main table (which routes customer prefixes back into the
    /// dataplane); then `iif PORT lookup IN` two after it, where what comes in on the port
    /// finds the account's routes (a destination not there falls through to the main table).
    /// A rule already there (adding) or gone (removing) is no error.
    pub async fn port_rules(
        &self,
        mark: u32,
        port: &str,
        table_in: u32,
        priority: u32,
        add: bool,
    ) -> Result<(), NetlinkError> {
        use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
        use rtnetlink::packet_route::AddressFamily;
        for (at, action) in [
            (priority, RuleAction::ToTable),
            (priority + 1, RuleAction::Unreachable),
            (priority + 2, RuleAction::ToTable),
        ] {
            let mut m = RuleMessage::default();
            m.header.family = AddressFamily::Inet;
            m.header.action = action;
            m.attributes.push(RuleAttribute::Priority(at));
            if at == priority + 2 {
                m.attributes.push(RuleAttribute::Iifname(port.to_string()));
                m.attributes.push(RuleAttribute::Table(table_in));
            } else {
                m.attributes.push(RuleAttribute::FwMark(mark));
                if action == RuleAction::ToTable {
                    m.attributes.push(RuleAttribute::Table(mark));
                }
            }
            let done = if add {
                let mut request = self.handle.rule().add();
                *request.message_mut() = m;
                request.execute().await
            } else {
                self.handle.rule().del(m).execute().await
            };
            match done {
                Ok(()) => {}
                // EEXIST adding, ENOENT removing.
                Err(rtnetlink::Error::NetlinkError(e))
                    if (add && e.raw_code() == -17) || (!add && e.raw_code() == -2) => {}
                Err(e) => {
                    return Err(NetlinkError::Route(format!(
                        "{} rule {at} of port {port} ({action:?}): {e}",
                        if add { "add" } else { "delete" }
                    )))
                }
            }
        }
        Ok(())
    }

    /// Makes sure the policy rule `priority: lookup table` exists for IPv4 and IPv6, so the
    /// PoP's own traffic consults the peering table before the main one (a prefix it does not
    /// hold falls through to the next rule).
    pub async fn ensure_rule(&self, table: u32, priority: u32) -> Result<(), NetlinkError> {
        use rtnetlink::packet_route::rule::RuleAction;
        for v6 in [false, true] {
            let add = self.handle.rule().add().table_id(table).priority(priority);
            let done = if v6 {
                let mut add = add.v6();
                add.message_mut().header.action = RuleAction::ToTable;
                add.execute().await
            } else {
                let mut add = add.v4();
                add.message_mut().header.action = RuleAction::ToTable;
                add.execute().await
            };
            match done {
                Ok(()) => {}
                // EEXIST: it is there already.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {}
                Err(e) => {
                    return Err(NetlinkError::Route(format!(
                        "rule {priority}: lookup {table}: {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The `proto bgp` routes in `table`: destination and gateway.
    pub async fn bgp_routes(
        &self,
        table: u32,
    ) -> Result<Vec<((IpAddr, u8), Option<IpAddr>)>, NetlinkError> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let filter = if v6 {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
            };
            let mut routes = self.handle.route().get(filter).execute();
            while let Some(r) = routes
                .try_next()
                .await
                .map_err(|e| NetlinkError::Route(format!("dump routes: {e}")))?
            {
                let in_table = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                });
                if in_table.unwrap_or(u32::from(r.header.table)) != table
                    || r.header.protocol != RouteProtocol::Bgp
                {
                    continue;
                }
                let len = r.header.destination_prefix_length;
                let mut dst = None;
                let mut via = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(d) => dst = route_ip(d),
                        RouteAttribute::Gateway(g) => via = route_ip(g),
                        _ => {}
                    }
                }
                let any: IpAddr = if v6 {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                };
                out.push(((dst.unwrap_or(any), len), via));
            }
        }
        Ok(out)
    }

    /// Takes `addresses` off the interface (the others stay); a missing interface has none.
    pub async fn remove(&self, name: &str, addresses: &[(IpAddr, u8)]) -> Result<(), NetlinkError> {
        // Only its index: its addresses are read below, with their messages.
        let index = match self.link_message(name).await {
            Ok(m) => m.header.index,
            Err(NetlinkError::NoInterface(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut msgs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut doomed = Vec::new();
        while let Some(a) = msgs
            .try_next()
            .await
            .map_err(Self::kernel(name, "get addresses"))?
        {
            let len = a.header.prefix_len;
            let ours = a.attributes.iter().any(|attr| {
                matches!(attr, AddressAttribute::Address(ip) if addresses.contains(&(*ip, len)))
            });
            if ours {
                doomed.push(a);
            }
        }
        for a in doomed {
            self.handle
                .address()
                .del(a)
                .execute()
                .await
                .map_err(Self::kernel(name, "delete an address"))?;
        }
        Ok(())
    }
}

/// A route change for [`RouteWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    /// Put (or replace) the route to `dst` via `gateway`.
    Replace {
        /// Destination and length.
        dst: (IpAddr, u8),
        /// Next hop.
        gateway: IpAddr,
    },
    /// Take the route to `dst` out (one already gone is no error).
    Delete {
        /// Destination and length.
        dst: (IpAddr, u8),
    },
}

/// Bytes of route messages sent in one datagram.
const BATCH_BYTES: usize = 48 * 1024;

/// Writes many routes at once: each batch is one datagram of messages of which only the last
/// asks for an acknowledgement (the kernel answers a failed one with its error either way, and
/// handles a datagram's messages in order), so a batch costs one `sendto` and one `recv` where
/// a request per route costs two system calls each. Blocking: run it off the async threads.
pub struct RouteWriter {
    socket: rtnetlink::sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteWriter {
    /// A route socket of its own, in this thread's network namespace.
    pub fn open() -> Result<RouteWriter, NetlinkError> {
        let mut socket = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&rtnetlink::sys::SocketAddr::new(0, 0))?;
        // Room for every error of a full batch.
        socket.set_rx_buf_sz(4 << 20)?;
        Ok(RouteWriter {
            socket,
            seq: 0,
            buf: Vec::with_capacity(BATCH_BYTES + 1024),
        })
    }

    /// Writes `ops` into `table`; each one that failed, by index, with why.
    pub fn write(&mut self, table: u32, ops: &[RouteOp]) -> Vec<(usize, String)> {
        let mut failed = Vec::new();
        let mut start = 0;
        while start < ops.len() {
            self.buf.clear();
            let first = self.seq.wrapping_add(1);
            let mut end = start;
            let mut last_at = 0;
            while end < ops.len() && self.buf.len() < BATCH_BYTES {
                self.seq = self.seq.wrapping_add(1);
                last_at = self.buf.len();
                if let Err(e) = self.encode(table, ops[end]) {
                    failed.push((end, e.to_string()));
                }
                end += 1;
            }
            if self.buf.is_empty() {
                start = end;
                continue;
            }
            // The last message asks for the acknowledgement that ends the batch (the flags
            // are the 16 bits after the length and the type).
            let flags = u16::from_ne_bytes([self.buf[last_at + 6], self.buf[last_at + 7]]);
            self.buf[last_at + 6..last_at + 8]
                .copy_from_slice(&(flags | rtnetlink::packet_core::NLM_F_ACK).to_ne_bytes());
            let last = self.seq;
            let index = |seq: u32| start + seq.wrapping_sub(first) as usize;
            if let Err(e) = self.socket.send(&self.buf, 0) {
                failed.extend((start..end).map(|i| (i, format!("send: {e}"))));
                start = end;
                continue;
            }
            if let Err(e) = self.collect(last, &mut |seq, err| {
                let i = index(seq);
                let gone = matches!(ops.get(i), Some(RouteOp::Delete { .. }))
                    && err.raw_os_error() == Some(3);
                if !gone {
                    failed.push((i, err.to_string()));
                }
            }) {
                failed.extend((start..end).map(|i| (i, format!("receive: {e}"))));
            }
            start = end;
        }
        failed
    }

    /// Sends `request`, one whole netlink message that asks for an acknowledgement, and
    /// waits for it: the kernel's error if it refused.
    pub fn request(&mut self, request: &[u8]) -> std::io::Result<()> {
        if request.len() < 16 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a netlink message is at least its 16-byte header",
            ));
        }
        let seq = u32::from_ne_bytes([request[8], request[9], request[10], request[11]]);
        self.socket.send(request, 0)?;
        let mut refused = None;
        self.collect(seq, &mut |at, e| {
            if at == seq {
                refused = Some(e);
            }
        })?;
        refused.map_or(Ok(()), Err)
    }

    /// Appends the message of `op` at sequence number `self.seq`.
    fn encode(&mut self, table: u32, op: RouteOp) -> Result<(), NetlinkError> {
        use rtnetlink::packet_core::{
            NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_CREATE, NLM_F_REPLACE,
            NLM_F_REQUEST,
        };
        let (payload, flags) = match op {
            RouteOp::Replace { dst, gateway } => {
                let m = Netlink::route(dst, table)?
                    .gateway(gateway)
                    .map_err(|e| NetlinkError::Route(e.to_string()))?
                    .build();
                (
                    RouteNetlinkMessage::NewRoute(m),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            RouteOp::Delete { dst } => (
                RouteNetlinkMessage::DelRoute(Netlink::route(dst, table)?.build()),
                NLM_F_REQUEST,
            ),
        };
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(payload),
        );
        msg.header.flags = flags;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let at = self.buf.len();
        let len = msg.buffer_len();
        self.buf.resize(at + len.div_ceil(4) * 4, 0);
        msg.serialize(&mut self.buf[at..at + len]);
        Ok(())
    }

    /// Reads answers until the acknowledgement of `last`, giving each error to `on_error`.
    fn collect(
        &mut self,
        last: u32,
        on_error: &mut dyn FnMut(u32, std::io::Error),
    ) -> std::io::Result<()> {
        use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            self.socket.recv(&mut rx, 0)?;
            let mut at = 0;
            while at + 16 <= rx.len() {
                let len = u32::from_ne_bytes([rx[at], rx[at + 1], rx[at + 2], rx[at + 3]]) as usize;
                if len < 16 || at + len > rx.len() {
                    break;
                }
                if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..at + len])
                {
                    if let NetlinkPayload::Error(e) = &m.payload {
                        let seq = m.header.sequence_number;
                        if e.code.is_some() {
                            on_error(seq, e.to_io());
                        }
                        if seq == last {
                            return Ok(());
                        }
                    }
                }
                at += len.div_ceil(4) * 4;
            }
        }
    }
}

fn route_ip(a: &rtnetlink::packet_route::route::RouteAddress) -> Option<IpAddr> {
    use rtnetlink::packet_route::route::RouteAddress;
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{root, Namespace};
    use super::*;

    #[test]
    fn a_cnis_addresses_and_mtu_go_on_and_come_off_leaving_the_rest() {
        if !root() {
            return;
        }
        let ns = Namespace::new();
        let pair: Vec<(IpAddr, u8)> = vec![
            ("100.64.0.0".parse().unwrap(), 31),
            ("2001:db8:ff::".parse().unwrap(), 127),
        ];
        let asked = pair.clone();
        let (missing, configured, again, after) = ns.run(move |nl| {
            Box::pin(async move {
                let missing = nl.link("nope").await.err().map(|e| e.to_string());
                let configured = nl.configure("cnia", &asked, 1500).await.unwrap();
                // Configuring again changes nothing.
                let again = nl.configure("cnia", &asked, 1500).await.unwrap();
                nl.remove("cnia", &asked).await.unwrap();
                nl.remove("gone", &asked).await.unwrap();
                // What a run before left is found by its protocol, and only that.
                nl.configure("cnia", &asked, 1500).await.unwrap();
                assert_eq!(nl.remove_owned().await.unwrap(), 2);
                (missing, configured, again, nl.link("cnia").await.unwrap())
            })
        });
        assert_eq!(
            missing.as_deref(),
            Some("interface \"nope\" does not exist")
        );
        assert_eq!((configured.mtu, configured.admin_up), (1500, true));
        assert!(!configured.carrier, "its peer is down: no carrier");
        for a in &pair {
            assert!(configured.addresses.contains(a), "{configured:?}");
        }
        assert_eq!(again.addresses, configured.addresses);
        let ip = ns.ip(&["addr", "show", "cnia"]);
        assert!(
            ip.contains("mtu 1500") && ip.contains("192.0.2.9/24"),
            "{ip}"
        );
        assert!(!ip.contains("proto 0xed"), "{ip}");
        assert!(
            !ip.contains("100.64.0.0") && !ip.contains("2001:db8:ff::"),
            "{ip}"
        );
        assert_eq!(after.addresses, [("192.0.2.9".parse().unwrap(), 24)]);
    }

    #[test]
    fn a_delivery_ports_table_and_rules_go_in_and_come_out() {
        if !root() {
            return;
        }
        let ns = Namespace::new();
        ns.ip(&["link", "set", "cnib", "up"]);
        let (mark, table_in) = (0xed00_0042_u32, 0xec00_0042_u32);
        let gateway: std::net::Ipv4Addr = "192.0.2.10".parse().unwrap();
        ns.run(move |nl| {
            Box::pin(async move {
                nl.configure("cnia", &[], 1500).await.unwrap();
                nl.gateway_table(mark, gateway, "cnia", true).await.unwrap();
                nl.port_rules(mark, "cnia", table_in, 900, true)
                    .await
                    .unwrap();
                // Twice is no error.
                nl.port_rules(mark, "cnia", table_in, 900, true)
                    .await
                    .unwrap();
                let net: IpAddr = "10.60.0.0".parse().unwrap();
                nl.device_route((net, 24), "cnia", table_in, true)
                    .await
                    .unwrap();
            })
        });
        let rules = ns.ip(&["-4", "rule", "show"]);
        assert!(
            rules.contains("900:\tfrom all fwmark 0xed000042 lookup 3976200258"),
            "{rules}"
        );
        assert!(
            rules.contains("901:\tfrom all fwmark 0xed000042 unreachable"),
            "{rules}"
        );
        assert!(
            rules.contains("902:\tfrom all iif cnia lookup 3959423042"),
            "{rules}"
        );
        let routes = ns.ip(&["-4", "route", "show", "table", &mark.to_string()]);
        assert!(
            routes.contains("default via 192.0.2.10 dev cnia proto static onlink"),
            "{routes}"
        );
        let routes_in = ns.ip(&["-4", "route", "show", "table", &table_in.to_string()]);
        assert!(
            routes_in.contains("10.60.0.0/24 dev cnia proto static"),
            "{routes_in}"
        );
        ns.run(move |nl| {
            Box::pin(async move {
                nl.port_rules(mark, "cnia", table_in, 900, false)
                    .await
                    .unwrap();
                nl.port_rules(mark, "cnia", table_in, 900, false)
                    .await
                    .unwrap();
                nl.gateway_table(mark, gateway, "cnia", false)
                    .await
                    .unwrap();
            })
        });
        let rules = ns.ip(&["-4", "rule", "show"]);
        assert!(
            !rules.contains("0xed000042") && !rules.contains("iif cnia"),
            "{rules}"
        );
        let routes = ns.ip(&["-4", "route", "show", "table", &mark.to_string()]);
        assert!(routes.trim().is_empty(), "{routes}");
    }

    #[test]
    fn carrier_follows_the_far_end_of_the_cross_connect() {
        if !root() {
            return;
        }
        let ns = Namespace::new();
        ns.ip(&["link", "set", "cnib", "up"]);
        let up =
            ns.run(|nl| Box::pin(async move { nl.configure("cnia", &[], 1500).await.unwrap() }));
        assert!(up.carrier, "{up:?}");
        ns.ip(&["link", "set", "cnib", "down"]);
        let down = ns.run(|nl| Box::pin(async move { nl.link("cnia").await.unwrap() }));
        assert!(!down.carrier, "{down:?}");
    }

    #[test]
    fn batches_of_routes_go_in_and_out_with_each_failure_named() {
        if !root() {
            return;
        }
        let ns = Namespace::new();
        ns.ip(&["link", "set", "cnib", "up"]);
        ns.ip(&["link", "set", "cnia", "up"]);
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        let dst = |i: u32| -> (IpAddr, u8) {
            (
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8))),
                24,
            )
        };
        let (added, failed, removed) = ns.run(move |nl| {
            Box::pin(async move {
                let mut w = RouteWriter::open().unwrap();
                let mut ops: Vec<RouteOp> = (0..3000)
                    .map(|i| RouteOp::Replace {
                        dst: dst(i),
                        gateway: gw,
                    })
                    .collect();
                // Not on any link: the kernel refuses this one alone.
                ops.insert(
                    1234,
                    RouteOp::Replace {
                        dst: ("198.51.100.0".parse().unwrap(), 24),
                        gateway: "203.0.113.1".parse().unwrap(),
                    },
                );
                let failed = w.write(200, &ops);
                let added = nl.bgp_routes(200).await.unwrap().len();
                let mut gone: Vec<RouteOp> =
                    (0..3000).map(|i| RouteOp::Delete { dst: dst(i) }).collect();
                // One that is not there: no error.
                gone.push(RouteOp::Delete { dst: dst(5000) });
                assert!(w.write(200, &gone).is_empty());
                (added, failed, nl.bgp_routes(200).await.unwrap().len())
            })
        });
        assert_eq!(added, 3000);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, 1234);
        assert!(failed[0].1.contains("unreachable"), "{failed:?}");
        assert_eq!(removed, 0);
        assert!(
            ns.ip(&["route", "show", "table", "main"])
                .contains("192.0.2.0/24"),
            "the rest stays"
        );
    }
}
