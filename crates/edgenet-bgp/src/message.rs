//! BGP messages on the wire (RFC 4271 section 4): decode from and encode to bytes.
//!
//! Decoding never panics on any input; an error carries the NOTIFICATION (code, subcode, data)
//! that RFC 4271 section 6 says to send for it. Path attributes are decoded by
//! [`crate::message::Attribute`]; an UPDATE whose attributes are malformed in the ways RFC 7606
//! says to "treat as withdraw" decodes with `treat_as_withdraw` set instead of failing.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The 16-byte marker of every message.
const MARKER: [u8; 16] = [0xff; 16];
/// Header: marker, length (u16), type (u8).
pub const HEADER_LEN: usize = 19;
/// The largest message without extended messages (RFC 8654 is not negotiated).
pub const MAX_LEN: usize = 4096;
/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// Why bytes are not a valid message, as the NOTIFICATION to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (NOTIFICATION {code}/{subcode})")]
pub struct MessageError {
    /// NOTIFICATION error code (1 header, 2 OPEN, 3 UPDATE, ...).
    pub code: u8,
    /// NOTIFICATION error subcode.
    pub subcode: u8,
    /// The data field of the NOTIFICATION.
    pub data: Vec<u8>,
    /// A short human reason.
    pub reason: &'static str,
}

fn err(code: u8, subcode: u8, data: &[u8], reason: &'static str) -> MessageError {
    MessageError {
        code,
        subcode,
        data: data.to_vec(),
        reason,
    }
}

/// Address family and subsequent AFI (RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 unicast (AFI 1, SAFI 1).
    Ipv4Unicast,
    /// IPv6 unicast (AFI 2, SAFI 1).
    Ipv6Unicast,
    /// Any other pair, kept as numbers.
    Other(u16, u8),
}

impl Family {
    fn from_wire(afi: u16, safi: u8) -> Family {
        match (afi, safi) {
            (1, 1) => Family::Ipv4Unicast,
            (2, 1) => Family::Ipv6Unicast,
            (a, s) => Family::Other(a, s),
        }
    }

    fn to_wire(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (1, 1),
            Family::Ipv6Unicast => (2, 1),
            Family::Other(a, s) => (a, s),
        }
    }
}

/// A capability in an OPEN (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions (code 1).
    Multiprotocol(Family),
    /// Route refresh (code 2).
    RouteRefresh,
    /// Four-octet AS numbers (code 65), with the speaker's AS.
    FourOctetAs(u32),
    /// Anything else, kept as code and value.
    Unknown(u8, Vec<u8>),
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Protocol version: 4.
    pub version: u8,
    /// The 2-octet "My Autonomous System" (AS_TRANS when the real one needs 4 octets).
    pub my_as: u16,
    /// Hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Capabilities, in order.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The speaker's AS: from the four-octet capability when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
}

/// A NOTIFICATION message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data.
    pub data: Vec<u8>,
}

/// What a NOTIFICATION's code and subcode mean (RFC 4271 section 4.5, RFC 4486 for Cease,
/// RFC 7313 for route refresh), as an operator reads it.
pub fn notification_meaning(code: u8, subcode: u8) -> String {
    let sub = |names: &[&str]| {
        names
            .get(usize::from(subcode))
            .filter(|n| !n.is_empty())
            .map(|n| format!(": {n}"))
            .unwrap_or_else(|| format!(" (subcode {subcode})"))
    };
    match code {
        1 => format!(
            "Message Header Error{}",
            sub(&[
                "",
                "Connection Not Synchronized",
                "Bad Message Length",
                "Bad Message Type"
            ])
        ),
        2 => format!(
            "OPEN Message Error{}",
            sub(&[
                "",
                "Unsupported Version Number",
                "Bad Peer AS",
                "Bad BGP Identifier",
                "Unsupported Optional Parameter",
                "",
                "Unacceptable Hold Time",
                "Unsupported Capability",
            ])
        ),
        3 => format!(
            "UPDATE Message Error{}",
            sub(&[
                "",
                "Malformed Attribute List",
                "Unrecognized Well-known Attribute",
                "Missing Well-known Attribute",
                "Attribute Flags Error",
                "Attribute Length Error",
                "Invalid ORIGIN Attribute",
                "",
                "Invalid NEXT_HOP Attribute",
                "Optional Attribute Error",
                "Invalid Network Field",
                "Malformed AS_PATH",
            ])
        ),
        4 => "Hold Timer Expired".into(),
        5 => "Finite State Machine Error".into(),
        6 => format!(
            "Cease{}",
            sub(&[
                "",
                "Maximum Number of Prefixes Reached",
                "Administrative Shutdown",
                "Peer De-configured",
                "Administrative Reset",
                "Connection Rejected",
                "Other Configuration Change",
                "Connection Collision Resolution",
                "Out of Resources",
            ])
        ),
        7 => "ROUTE-REFRESH Message Error".into(),
        _ => format!("unknown error code {code} (subcode {subcode})"),
    }
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// IPv4 address and length.
    V4(Ipv4Addr, u8),
    /// IPv6 address and length.
    V6(Ipv6Addr, u8),
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// IGP (0).
    Igp,
    /// EGP (1).
    Egp,
    /// INCOMPLETE (2).
    Incomplete,
}

/// An AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// AS_SET (1).
    Set(Vec<u32>),
    /// AS_SEQUENCE (2).
    Sequence(Vec<u32>),
}

/// A path attribute (RFC 4271 section 4.3 and the RFCs that add attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN (1).
    Origin(Origin),
    /// AS_PATH (2), as 4-octet numbers when the session negotiated them.
    AsPath(Vec<Segment>),
    /// NEXT_HOP (3).
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC (4).
    Med(u32),
    /// LOCAL_PREF (5).
    LocalPref(u32),
    /// COMMUNITIES (8, RFC 1997).
    Communities(Vec<u32>),
    /// MP_REACH_NLRI (14, RFC 4760): family, next hops (one, or global + link-local), prefixes.
    MpReach {
        /// The family.
        family: Family,
        /// Next hop bytes: 4, 16 or 32 octets.
        next_hop: Vec<u8>,
        /// Reachable prefixes.
        nlri: Vec<Prefix>,
    },
    /// MP_UNREACH_NLRI (15).
    MpUnreach {
        /// The family.
        family: Family,
        /// Withdrawn prefixes.
        withdrawn: Vec<Prefix>,
    },
    /// AS4_PATH (17, RFC 6793), from 2-octet speakers.
    As4Path(Vec<Segment>),
    /// LARGE_COMMUNITY (32, RFC 8092): (global admin, local 1, local 2).
    LargeCommunities(Vec<(u32, u32, u32)>),
    /// Anything else, kept with its flags so it can be passed on.
    Unknown {
        /// Attribute flags.
        flags: u8,
        /// Type code.
        code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 prefixes.
    pub withdrawn: Vec<Prefix>,
    /// Path attributes.
    pub attributes: Vec<Attribute>,
    /// Reachable IPv4 prefixes.
    pub nlri: Vec<Prefix>,
    /// RFC 7606: an attribute was malformed in a way that makes this UPDATE's routes
    /// withdrawn rather than the session reset.
    pub treat_as_withdraw: bool,
    /// Type codes, ascending, of attributes that arrived with the Extended Length flag although
    /// short (BIRD sets it on MP_REACH_NLRI); encoding keeps the flag so a message round-trips
    /// byte for byte. Attributes longer than 255 bytes always get it.
    pub extended_length: Vec<u8>,
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (1).
    Open(Open),
    /// UPDATE (2).
    Update(Update),
    /// NOTIFICATION (3).
    Notification(Notification),
    /// KEEPALIVE (4).
    Keepalive,
    /// ROUTE-REFRESH (5, RFC 2918).
    RouteRefresh(Family),
}

/// What a session negotiated that changes how messages are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// AS numbers in AS_PATH are 4 octets (both sides sent the capability).
    pub four_octet_as: bool,
}

/// A little reader over a byte slice; every read checks the length.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The length of the next whole message at the start of `buf`, once its header is there.
/// Header errors (marker, length) are reported as RFC 4271 section 6.1 says.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, MessageError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(err(1, 1, &[], "connection not synchronized (bad marker)"));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(err(1, 2, &buf[16..18], "bad message length"));
    }
    Ok(Some(len))
}

impl Message {
    /// Decodes one whole message (header included).
    pub fn decode(buf: &[u8], codec: Codec) -> Result<Message, MessageError> {
        let len = match frame_len(buf)? {
            Some(l) if l == buf.len() => l,
            _ => return Err(err(1, 2, &[], "bad message length")),
        };
        let kind = buf[18];
        let body = &buf[HEADER_LEN..len];
        let bad_len = || err(1, 2, &buf[16..18], "bad message length");
        match kind {
            1 => decode_open(body).map(Message::Open),
            2 => {
                if body.len() < 4 {
                    return Err(bad_len());
                }
                decode_update(body, codec).map(Message::Update)
            }
            3 => {
                if body.len() < 2 {
                    return Err(bad_len());
                }
                Ok(Message::Notification(Notification {
                    code: body[0],
                    subcode: body[1],
                    data: body[2..].to_vec(),
                }))
            }
            4 => {
                if !body.is_empty() {
                    return Err(bad_len());
                }
                Ok(Message::Keepalive)
            }
            5 => {
                if body.len() != 4 {
                    return Err(bad_len());
                }
                let afi = u16::from_be_bytes([body[0], body[1]]);
                Ok(Message::RouteRefresh(Family::from_wire(afi, body[3])))
            }
            _ => Err(err(1, 3, &[kind], "bad message type")),
        }
    }

    /// Encodes the message, header included.
    pub fn encode(&self, codec: Codec) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&[0, 0]);
        let kind = match self {
            Message::Open(o) => {
                encode_open(o, &mut out);
                1
            }
            Message::Update(u) => {
                encode_update(u, codec, &mut out);
                2
            }
            Message::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
                3
            }
            Message::Keepalive => 4,
            Message::RouteRefresh(f) => {
                let (afi, safi) = f.to_wire();
                out.extend_from_slice(&afi.to_be_bytes());
                out.push(0);
                out.push(safi);
                5
            }
        };
        out.insert(18, kind);
        let len = out.len() as u16;
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out
    }
}

fn decode_open(body: &[u8]) -> Result<Open, MessageError> {
    let mut r = Reader { buf: body };
    let short = || err(1, 2, &[], "OPEN too short");
    let version = r.u8().ok_or_else(short)?;
    if version != 4 {
        return Err(err(2, 1, &[0, 4], "unsupported version number"));
    }
    let my_as = r.u16().ok_or_else(short)?;
    let hold_time = r.u16().ok_or_else(short)?;
    if hold_time == 1 || hold_time == 2 {
        return Err(err(2, 6, &[], "unacceptable hold time"));
    }
    let router_id = Ipv4Addr::from(r.u32().ok_or_else(short)?);
    if router_id.is_unspecified() {
        return Err(err(2, 3, &[], "bad BGP identifier"));
    }
    let params_len = usize::from(r.u8().ok_or_else(short)?);
    let params = r.take(params_len).ok_or_else(short)?;
    if !r.is_empty() {
        return Err(err(1, 2, &[], "OPEN longer than its parameters"));
    }
    let mut capabilities = Vec::new();
    let mut p = Reader { buf: params };
    while !p.is_empty() {
        let malformed = || err(2, 0, &[], "malformed optional parameter");
        let ptype = p.u8().ok_or_else(malformed)?;
        let plen = usize::from(p.u8().ok_or_else(malformed)?);
        let value = p.take(plen).ok_or_else(malformed)?;
        if ptype != 2 {
            return Err(err(2, 4, &[], "unsupported optional parameter"));
        }
        let mut c = Reader { buf: value };
        while !c.is_empty() {
            let code = c.u8().ok_or_else(malformed)?;
            let clen = usize::from(c.u8().ok_or_else(malformed)?);
            let cval = c.take(clen).ok_or_else(malformed)?;
            capabilities.push(match (code, cval.len()) {
                (1, 4) => Capability::Multiprotocol(Family::from_wire(
                    u16::from_be_bytes([cval[0], cval[1]]),
                    cval[3],
                )),
                (2, 0) => Capability::RouteRefresh,
                (65, 4) => Capability::FourOctetAs(u32::from_be_bytes([
                    cval[0], cval[1], cval[2], cval[3],
                ])),
                _ => Capability::Unknown(code, cval.to_vec()),
            });
        }
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

fn encode_open(o: &Open, out: &mut Vec<u8>) {
    out.push(o.version);
    out.extend_from_slice(&o.my_as.to_be_bytes());
    out.extend_from_slice(&o.hold_time.to_be_bytes());
    out.extend_from_slice(&o.router_id.octets());
    let mut caps = Vec::new();
    for c in &o.capabilities {
        match c {
            Capability::Multiprotocol(f) => {
                let (afi, safi) = f.to_wire();
                caps.extend_from_slice(&[1, 4]);
                caps.extend_from_slice(&afi.to_be_bytes());
                caps.extend_from_slice(&[0, safi]);
            }
            Capability::RouteRefresh => caps.extend_from_slice(&[2, 0]),
            Capability::FourOctetAs(a) => {
                caps.extend_from_slice(&[65, 4]);
                caps.extend_from_slice(&a.to_be_bytes());
            }
            Capability::Unknown(code, v) => {
                caps.push(*code);
                caps.push(v.len() as u8);
                caps.extend_from_slice(v);
            }
        }
    }
    if caps.is_empty() {
        out.push(0);
    } else {
        // One capabilities parameter holding them all.
        out.push(caps.len() as u8 + 2);
        out.push(2);
        out.push(caps.len() as u8);
        out.extend_from_slice(&caps);
    }
}

fn decode_prefixes(buf: &[u8], v6: bool) -> Option<Vec<Prefix>> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    let max = if v6 { 128 } else { 32 };
    while !r.is_empty() {
        let len = r.u8()?;
        if len > max {
            return None;
        }
        let bytes = r.take(usize::from(len).div_ceil(8))?;
        if v6 {
            let mut a = [0u8; 16];
            a[..bytes.len()].copy_from_slice(bytes);
            out.push(Prefix::V6(Ipv6Addr::from(a), len));
        } else {
            let mut a = [0u8; 4];
            a[..bytes.len()].copy_from_slice(bytes);
            out.push(Prefix::V4(Ipv4Addr::from(a), len));
        }
    }
    Some(out)
}

fn encode_prefixes(prefixes: &[Prefix], out: &mut Vec<u8>) {
    for p in prefixes {
        match p {
            Prefix::V4(a, len) => {
                out.push(*len);
                out.extend_from_slice(&a.octets()[..usize::from(*len).div_ceil(8)]);
            }
            Prefix::V6(a, len) => {
                out.push(*len);
                out.extend_from_slice(&a.octets()[..usize::from(*len).div_ceil(8)]);
            }
        }
    }
}

fn decode_update(body: &[u8], codec: Codec) -> Result<Update, MessageError> {
    let malformed = || err(3, 1, &[], "malformed attribute list");
    let mut r = Reader { buf: body };
    let wlen = usize::from(r.u16().ok_or_else(malformed)?);
    let withdrawn = r.take(wlen).ok_or_else(malformed)?;
    let alen = usize::from(r.u16().ok_or_else(malformed)?);
    let attrs = r.take(alen).ok_or_else(malformed)?;
    let nlri = r.buf;
    let withdrawn = decode_prefixes(withdrawn, false)
        .ok_or_else(|| err(3, 10, &[], "invalid network field"))?;
    let nlri =
        decode_prefixes(nlri, false).ok_or_else(|| err(3, 10, &[], "invalid network field"))?;
    let mut update = Update {
        withdrawn,
        nlri,
        ..Update::default()
    };
    let mut a = Reader { buf: attrs };
    let mut seen = [false; 256];
    while !a.is_empty() {
        let flags = a.u8().ok_or_else(malformed)?;
        let code = a.u8().ok_or_else(malformed)?;
        let len = if flags & 0x10 != 0 {
            usize::from(a.u16().ok_or_else(malformed)?)
        } else {
            usize::from(a.u8().ok_or_else(malformed)?)
        };
        // A length running past the attributes is not recoverable (RFC 7606 section 4).
        let value = a.take(len).ok_or_else(malformed)?;
        if std::mem::replace(&mut seen[usize::from(code)], true) {
            // Repeated attributes: MP_(UN)REACH repeated resets; others are discarded (7606 3.g).
            if code == 14 || code == 15 {
                return Err(malformed());
            }
            continue;
        }
        if flags & 0x10 != 0 && len <= 255 {
            update.extended_length.push(code);
        }
        match decode_attribute(flags, code, value, codec) {
            Some(attr) => update.attributes.push(attr),
            None if code == 14 || code == 15 => {
                // Malformed MP_(UN)REACH: session reset (RFC 7606 section 7.3, 7.4 and 5.3).
                return Err(err(3, 9, &[], "optional attribute error"));
            }
            // Malformed well-known or routing attributes: treat as withdraw (7606 section 7).
            None => update.treat_as_withdraw = true,
        }
    }
    update.extended_length.sort_unstable();
    Ok(update)
}

fn as_segments(value: &[u8], four: bool) -> Option<Vec<Segment>> {
    let width = if four { 4 } else { 2 };
    let mut r = Reader { buf: value };
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u8()?;
        let count = usize::from(r.u8()?);
        if count == 0 {
            return None;
        }
        let raw = r.take(count * width)?;
        let asns: Vec<u32> = raw
            .chunks_exact(width)
            .map(|c| {
                if four {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        out.push(match kind {
            1 => Segment::Set(asns),
            2 => Segment::Sequence(asns),
            _ => return None,
        });
    }
    Some(out)
}

fn decode_attribute(flags: u8, code: u8, v: &[u8], codec: Codec) -> Option<Attribute> {
    let u32_at = |v: &[u8]| u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    Some(match code {
        1 if v.len() == 1 => Attribute::Origin(match v[0] {
            0 => Origin::Igp,
            1 => Origin::Egp,
            2 => Origin::Incomplete,
            _ => return None,
        }),
        2 => Attribute::AsPath(as_segments(v, codec.four_octet_as)?),
        3 if v.len() == 4 => Attribute::NextHop(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
        4 if v.len() == 4 => Attribute::Med(u32_at(v)),
        5 if v.len() == 4 => Attribute::LocalPref(u32_at(v)),
        8 if v.len().is_multiple_of(4) => {
            Attribute::Communities(v.chunks_exact(4).map(u32_at).collect())
        }
        14 => {
            let mut r = Reader { buf: v };
            let afi = r.u16()?;
            let safi = r.u8()?;
            let nh_len = usize::from(r.u8()?);
            let next_hop = r.take(nh_len)?.to_vec();
            let _reserved = r.u8()?;
            let family = Family::from_wire(afi, safi);
            let v6 = family == Family::Ipv6Unicast;
            if v6 && nh_len != 16 && nh_len != 32 {
                return None;
            }
            Attribute::MpReach {
                family,
                next_hop,
                nlri: decode_prefixes(r.buf, v6)?,
            }
        }
        15 => {
            let mut r = Reader { buf: v };
            let afi = r.u16()?;
            let safi = r.u8()?;
            let family = Family::from_wire(afi, safi);
            Attribute::MpUnreach {
                family,
                withdrawn: decode_prefixes(r.buf, family == Family::Ipv6Unicast)?,
            }
        }
        17 => Attribute::As4Path(as_segments(v, true)?),
        32 if v.len().is_multiple_of(12) => Attribute::LargeCommunities(
            v.chunks_exact(12)
                .map(|c| (u32_at(&c[..4]), u32_at(&c[4..8]), u32_at(&c[8..])))
                .collect(),
        ),
        1 | 3 | 4 | 5 | 8 | 32 => return None,
        // The extended-length bit describes this encoding, not the attribute.
        _ => Attribute::Unknown {
            flags: flags & !0x10,
            code,
            value: v.to_vec(),
        },
    })
}

fn encode_segments(segs: &[Segment], four: bool, out: &mut Vec<u8>) {
    for s in segs {
        let (kind, asns) = match s {
            Segment::Set(a) => (1, a),
            Segment::Sequence(a) => (2, a),
        };
        // A segment holds at most 255 numbers; longer paths split.
        for chunk in asns.chunks(255) {
            out.push(kind);
            out.push(chunk.len() as u8);
            for a in chunk {
                if four {
                    out.extend_from_slice(&a.to_be_bytes());
                } else {
                    let two = u16::try_from(*a).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&two.to_be_bytes());
                }
            }
        }
    }
}

fn encode_update(u: &Update, codec: Codec, out: &mut Vec<u8>) {
    let mut withdrawn = Vec::new();
    encode_prefixes(&u.withdrawn, &mut withdrawn);
    out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    out.extend_from_slice(&withdrawn);
    let mut attrs = Vec::new();
    for a in &u.attributes {
        let (flags, code, value) = encode_attribute(a, codec);
        if value.len() > 255 || u.extended_length.contains(&code) {
            attrs.push(flags | 0x10);
            attrs.push(code);
            attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            attrs.push(flags & !0x10);
            attrs.push(code);
            attrs.push(value.len() as u8);
        }
        attrs.extend_from_slice(&value);
    }
    out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&attrs);
    encode_prefixes(&u.nlri, out);
}

/// Flags: optional 0x80, transitive 0x40.
fn encode_attribute(a: &Attribute, codec: Codec) -> (u8, u8, Vec<u8>) {
    let mut v = Vec::new();
    let (flags, code) = match a {
        Attribute::Origin(o) => {
            v.push(match o {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            });
            (0x40, 1)
        }
        Attribute::AsPath(s) => {
            encode_segments(s, codec.four_octet_as, &mut v);
            (0x40, 2)
        }
        Attribute::NextHop(n) => {
            v.extend_from_slice(&n.octets());
            (0x40, 3)
        }
        Attribute::Med(m) => {
            v.extend_from_slice(&m.to_be_bytes());
            (0x80, 4)
        }
        Attribute::LocalPref(l) => {
            v.extend_from_slice(&l.to_be_bytes());
            (0x40, 5)
        }
        Attribute::Communities(c) => {
            for x in c {
                v.extend_from_slice(&x.to_be_bytes());
            }
            (0xc0, 8)
        }
        Attribute::MpReach {
            family,
            next_hop,
            nlri,
        } => {
            let (afi, safi) = family.to_wire();
            v.extend_from_slice(&afi.to_be_bytes());
            v.push(safi);
            v.push(next_hop.len() as u8);
            v.extend_from_slice(next_hop);
            v.push(0);
            encode_prefixes(nlri, &mut v);
            (0x80, 14)
        }
        Attribute::MpUnreach { family, withdrawn } => {
            let (afi, safi) = family.to_wire();
            v.extend_from_slice(&afi.to_be_bytes());
            v.push(safi);
            encode_prefixes(withdrawn, &mut v);
            (0x80, 15)
        }
        Attribute::As4Path(s) => {
            encode_segments(s, true, &mut v);
            (0xc0, 17)
        }
        Attribute::LargeCommunities(c) => {
            for (g, l1, l2) in c {
                v.extend_from_slice(&g.to_be_bytes());
                v.extend_from_slice(&l1.to_be_bytes());
                v.extend_from_slice(&l2.to_be_bytes());
            }
            (0xc0, 32)
        }
        Attribute::Unknown { flags, code, value } => {
            v.extend_from_slice(value);
            (*flags, *code)
        }
    };
    (flags, code, v)
}

/// The number of ASes a path counts for in path length (RFC 4271 9.1.2.2: a set counts as one).
pub fn path_len(path: &[Segment]) -> usize {
    path.iter()
        .map(|s| match s {
            Segment::Set(_) => 1,
            Segment::Sequence(a) => a.len(),
        })
        .sum()
}

/// The true AS path of a route from a 2-octet speaker (RFC 6793 section 4.2.3): the leading
/// ASes of AS_PATH that AS4_PATH does not cover, then AS4_PATH. When AS_PATH is shorter than
/// AS4_PATH, AS4_PATH is ignored.
pub fn merge_as4_path(as_path: &[Segment], as4_path: &[Segment]) -> Vec<Segment> {
    let (n, n4) = (path_len(as_path), path_len(as4_path));
    if n < n4 {
        return as_path.to_vec();
    }
    let mut keep = n - n4;
    let mut out = Vec::new();
    for seg in as_path {
        if keep == 0 {
            break;
        }
        match seg {
            Segment::Set(a) => {
                out.push(Segment::Set(a.clone()));
                keep -= 1;
            }
            Segment::Sequence(a) => {
                let take = keep.min(a.len());
                out.push(Segment::Sequence(a[..take].to_vec()));
                keep -= take;
            }
        }
    }
    out.extend(as4_path.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_named() {
        assert_eq!(
            notification_meaning(6, 1),
            "Cease: Maximum Number of Prefixes Reached"
        );
        assert_eq!(
            notification_meaning(2, 2),
            "OPEN Message Error: Bad Peer AS"
        );
        assert_eq!(notification_meaning(4, 0), "Hold Timer Expired");
        assert_eq!(notification_meaning(6, 42), "Cease (subcode 42)");
        assert_eq!(
            notification_meaning(3, 7),
            "UPDATE Message Error (subcode 7)"
        );
    }

    const FOUR: Codec = Codec {
        four_octet_as: true,
    };
    const TWO: Codec = Codec {
        four_octet_as: false,
    };

    fn round_trip(m: &Message, codec: Codec) -> Vec<u8> {
        let bytes = m.encode(codec);
        assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
        assert_eq!(&Message::decode(&bytes, codec).unwrap(), m);
        bytes
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Messages BIRD 2.0.12 and GoBGP 3.10 sent when announcing 192.0.2.0/24 and
    /// 2001:db8:1::/48 with MED 10 from AS 4200000001 (recorded with
    /// `crates/edgenet/tests/anycast/rig.py capture`). Each decodes to what the speaker meant
    /// and encodes back to the same bytes.
    const BIRD_OPEN: &str = "ffffffffffffffffffffffffffffffff003b01045ba000f00a0001021e021c010400010001010400020001020040020078410\
        4fa56ea0146004700";
    const BIRD_UPDATE_V4: &str = "ffffffffffffffffffffffffffffffff0036020000001b400101004002060201fa56ea014003040a0001028004040000000a18c00002";
    const BIRD_END_OF_RIB_V4: &str = "ffffffffffffffffffffffffffffffff00170200000000";
    const BIRD_UPDATE_V6: &str = "ffffffffffffffffffffffffffffffff005b0200000044900e002c00020120fd000001000000000000000000000002fe80000\
        0000000003c285afffe74a77a003020010db80001400101004002060201fa56ea018004040000000a";
    const BIRD_END_OF_RIB_V6: &str = "ffffffffffffffffffffffffffffffff001d0200000006800f03000201";
    const GOBGP_OPEN: &str = "ffffffffffffffffffffffffffffffff004101045ba0005a0a0001022402220200490402766d0001040001000101040002000\
        14104fa56ea010506000100010002";
    const GOBGP_UPDATE_V6: &str = "ffffffffffffffffffffffffffffffff004a0200000033400101004002060201fa56ea018004040000000a800e1c00020110fd\
        000001000000000000000000000002003020010db80001";

    fn captured(h: &str) -> Message {
        let bytes = hex(&h.split_whitespace().collect::<String>());
        let m = Message::decode(&bytes, FOUR).unwrap();
        assert_eq!(m.encode(FOUR), bytes, "byte-exact re-encoding of {m:?}");
        m
    }

    #[test]
    fn bird_and_gobgp_captures_round_trip_byte_exact() {
        let Message::Open(o) = captured(BIRD_OPEN) else {
            panic!("OPEN")
        };
        assert_eq!(
            (o.my_as, o.hold_time, o.asn()),
            (AS_TRANS, 240, 4_200_000_001)
        );
        assert!(o
            .capabilities
            .contains(&Capability::Multiprotocol(Family::Ipv6Unicast)));
        // Graceful restart (64), enhanced route refresh (70), long-lived GR (71) kept as is.
        assert!(o
            .capabilities
            .contains(&Capability::Unknown(64, vec![0, 0x78])));
        let Message::Open(o) = captured(GOBGP_OPEN) else {
            panic!("OPEN")
        };
        assert_eq!((o.hold_time, o.asn()), (90, 4_200_000_001));

        let Message::Update(u) = captured(BIRD_UPDATE_V4) else {
            panic!("UPDATE")
        };
        assert_eq!(u.nlri, vec![Prefix::V4(Ipv4Addr::new(192, 0, 2, 0), 24)]);
        assert_eq!(
            u.attributes,
            vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![Segment::Sequence(vec![4_200_000_001])]),
                Attribute::NextHop(Ipv4Addr::new(10, 0, 1, 2)),
                Attribute::Med(10),
            ]
        );
        assert_eq!(
            captured(BIRD_END_OF_RIB_V4),
            Message::Update(Update::default())
        );

        let Message::Update(u) = captured(BIRD_UPDATE_V6) else {
            panic!("UPDATE")
        };
        let Attribute::MpReach {
            family,
            next_hop,
            nlri,
        } = &u.attributes[0]
        else {
            panic!("MP_REACH first: {u:?}")
        };
        assert_eq!(*family, Family::Ipv6Unicast);
        assert_eq!(next_hop.len(), 32, "global and link-local next hop");
        assert_eq!(nlri, &vec![Prefix::V6("2001:db8:1::".parse().unwrap(), 48)]);
        assert_eq!(
            u.extended_length,
            vec![14],
            "BIRD sets Extended Length on MP_REACH"
        );

        let Message::Update(u) = captured(BIRD_END_OF_RIB_V6) else {
            panic!("UPDATE")
        };
        assert_eq!(
            u.attributes,
            vec![Attribute::MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: vec![]
            }]
        );

        let Message::Update(u) = captured(GOBGP_UPDATE_V6) else {
            panic!("UPDATE")
        };
        assert!(
            matches!(&u.attributes[3], Attribute::MpReach { next_hop, .. } if next_hop.len() == 16)
        );
        assert!(u.extended_length.is_empty());
    }

    #[test]
    fn keepalive_is_19_bytes() {
        let b = round_trip(&Message::Keepalive, FOUR);
        let mut want = vec![0xff; 16];
        want.extend_from_slice(&[0, 19, 4]);
        assert_eq!(b, want);
    }

    #[test]
    fn open_with_capabilities_byte_exact() {
        let open = Message::Open(Open {
            version: 4,
            my_as: AS_TRANS,
            hold_time: 90,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![
                Capability::Multiprotocol(Family::Ipv4Unicast),
                Capability::Multiprotocol(Family::Ipv6Unicast),
                Capability::RouteRefresh,
                Capability::FourOctetAs(4_200_000_001),
            ],
        });
        let b = round_trip(&open, FOUR);
        let body = &b[HEADER_LEN..];
        assert_eq!(
            body,
            &[
                4, 0x5b, 0xa0, 0, 90, 192, 0, 2, 1, // version, AS_TRANS, hold, id
                22, 2, 20, // params len, capabilities param, its length
                1, 4, 0, 1, 0, 1, // MP IPv4 unicast
                1, 4, 0, 2, 0, 1, // MP IPv6 unicast
                2, 0, // route refresh
                65, 4, 0xfa, 0x56, 0xea, 0x01, // 4-octet AS 4200000001
            ][..]
        );
        let Message::Open(o) = Message::decode(&b, FOUR).unwrap() else {
            unreachable!()
        };
        assert_eq!(o.asn(), 4_200_000_001);
    }

    #[test]
    fn update_ipv4_and_ipv6_round_trips() {
        let update = Message::Update(Update {
            withdrawn: vec![Prefix::V4(Ipv4Addr::new(198, 51, 100, 0), 24)],
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(vec![Segment::Sequence(vec![65001, 4_200_000_001])]),
                Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
                Attribute::Med(10),
                Attribute::Communities(vec![0xffff_ff04]),
                Attribute::LargeCommunities(vec![(65001, 1, 2)]),
                Attribute::MpReach {
                    family: Family::Ipv6Unicast,
                    next_hop: [0x20, 1, 0xd, 0xb8]
                        .iter()
                        .copied()
                        .chain([0; 12])
                        .collect(),
                    nlri: vec![Prefix::V6("2001:db8:1::".parse().unwrap(), 48)],
                },
            ],
            nlri: vec![
                Prefix::V4(Ipv4Addr::new(203, 0, 113, 0), 24),
                Prefix::V4(Ipv4Addr::new(10, 0, 0, 0), 8),
            ],
            treat_as_withdraw: false,
            extended_length: vec![],
        });
        round_trip(&update, FOUR);
        let withdraw = Message::Update(Update {
            attributes: vec![Attribute::MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: vec![Prefix::V6("2001:db8:1::".parse().unwrap(), 48)],
            }],
            ..Update::default()
        });
        round_trip(&withdraw, FOUR);
    }

    #[test]
    fn two_octet_sessions_write_as_trans_for_big_asns() {
        let u = Message::Update(Update {
            attributes: vec![
                Attribute::AsPath(vec![Segment::Sequence(vec![65001, 4_200_000_001])]),
                Attribute::As4Path(vec![Segment::Sequence(vec![65001, 4_200_000_001])]),
            ],
            ..Update::default()
        });
        let b = u.encode(TWO);
        let Message::Update(back) = Message::decode(&b, TWO).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            back.attributes[0],
            Attribute::AsPath(vec![Segment::Sequence(vec![65001, u32::from(AS_TRANS)])])
        );
        assert_eq!(
            back.attributes[1],
            Attribute::As4Path(vec![Segment::Sequence(vec![65001, 4_200_000_001])])
        );
    }

    #[test]
    fn as4_path_restores_the_four_octet_numbers() {
        let trans = u32::from(AS_TRANS);
        // A 2-octet peer 65002 prepended itself to a path through 4200000001 and 65001.
        let as_path = [Segment::Sequence(vec![65002, trans, 65001])];
        let as4 = [Segment::Sequence(vec![4_200_000_001, 65001])];
        assert_eq!(
            merge_as4_path(&as_path, &as4),
            vec![
                Segment::Sequence(vec![65002]),
                Segment::Sequence(vec![4_200_000_001, 65001])
            ]
        );
        // AS4_PATH longer than AS_PATH: ignored.
        let long = [Segment::Sequence(vec![1, 2, 3, 4])];
        assert_eq!(merge_as4_path(&as_path, &long), as_path.to_vec());
        // A set counts as one AS.
        let with_set = [Segment::Sequence(vec![65002]), Segment::Set(vec![trans, 7])];
        let as4 = [Segment::Set(vec![4_200_000_001, 7])];
        assert_eq!(
            merge_as4_path(&with_set, &as4),
            vec![
                Segment::Sequence(vec![65002]),
                Segment::Set(vec![4_200_000_001, 7])
            ]
        );
        assert_eq!(path_len(&with_set), 2);
    }

    #[test]
    fn notification_and_route_refresh() {
        round_trip(
            &Message::Notification(Notification {
                code: 6,
                subcode: 2,
                data: b"shutdown".to_vec(),
            }),
            FOUR,
        );
        round_trip(&Message::RouteRefresh(Family::Ipv6Unicast), FOUR);
    }

    #[test]
    fn header_errors_name_the_notification() {
        let mut b = Message::Keepalive.encode(FOUR);
        b[0] = 0;
        assert_eq!(frame_len(&b).unwrap_err().code, 1);
        let mut b = Message::Keepalive.encode(FOUR);
        b[17] = 18;
        assert_eq!(frame_len(&b).unwrap_err().subcode, 2);
        let mut b = Message::Keepalive.encode(FOUR);
        b[18] = 9;
        assert_eq!(Message::decode(&b, FOUR).unwrap_err().subcode, 3);
        assert_eq!(frame_len(&b[..10]).unwrap(), None, "incomplete header");
    }

    #[test]
    fn rfc_7606_malformed_routing_attributes_treat_as_withdraw() {
        let good = Message::Update(Update {
            attributes: vec![Attribute::Origin(Origin::Igp)],
            nlri: vec![Prefix::V4(Ipv4Addr::new(203, 0, 113, 0), 24)],
            ..Update::default()
        });
        let mut b = good.encode(FOUR);
        // ORIGIN value 7 is invalid: the routes are withdrawn, the session stays.
        let at = b.len() - 4 - 1;
        assert_eq!(b[at], 0);
        b[at] = 7;
        let Message::Update(u) = Message::decode(&b, FOUR).unwrap() else {
            unreachable!()
        };
        assert!(u.treat_as_withdraw);
        // An attribute length running past the list resets the session.
        let mut b = good.encode(FOUR);
        let len_at = HEADER_LEN + 2 + 2 + 2;
        b[len_at] = 200;
        assert_eq!(Message::decode(&b, FOUR).unwrap_err().code, 3);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = HEADER_LEN + (seed % 64) as usize;
            let mut b: Vec<u8> = (0..len).map(|i| (seed >> (i % 24)) as u8).collect();
            b[..16].copy_from_slice(&MARKER);
            b[16..18].copy_from_slice(&(len as u16).to_be_bytes());
            b[18] = (seed % 6) as u8;
            let _ = Message::decode(&b, FOUR);
            let _ = Message::decode(&b, TWO);
        }
    }
}
