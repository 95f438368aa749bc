//! JA4, the TLS client fingerprint (FoxIO's specification), from the bytes of a ClientHello
//! as it arrives on the socket, before the TLS library reads it.
//!
//! `t13d1516h2_8daaf6152771_02713d6af862`: transport (`t`: TCP), highest offered TLS version,
//! SNI present (`d`) or not (`i`), the number of cipher suites and of extensions (GREASE
//! values left out), the first and last characters of the first ALPN protocol; then the first
//! 12 hex digits of SHA-256 over the sorted cipher suites; then over the sorted extensions
//! (without SNI and ALPN) followed by the signature algorithms in their order.
//!
//! The same read gives the server name and the ALPN list ([`ClientHello`]): the node answers an
//! ACME TLS-ALPN-01 validation (a hello offering only `acme-tls/1`) from them before TLS.

use sha2::{Digest, Sha256};

/// The largest ClientHello read (with record headers).
pub const MAX_HELLO: usize = 16 * 1024 + 5 * 4;

/// What the bytes so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// The start of a ClientHello: read more.
    Incomplete,
    /// Not a TLS ClientHello (or a malformed one).
    NotHello,
    /// A whole ClientHello.
    Complete(ClientHello),
}

/// What is read of a whole ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The JA4 fingerprint.
    pub ja4: String,
    /// The SNI host name, lower-cased, when the client sent one.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in order.
    pub alpn: Vec<Vec<u8>>,
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// A cursor over the handshake bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

fn u16s(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// Reads TLS records from `buf` (the first bytes a client sent) and fingerprints the
/// ClientHello they carry.
pub fn fingerprint(buf: &[u8]) -> Hello {
    // Gather the handshake message from as many records as it spans.
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return if rest.first().is_some_and(|t| *t != 0x16) {
                Hello::NotHello
            } else {
                Hello::Incomplete
            };
        }
        if rest[0] != 0x16 || rest[1] != 0x03 {
            return Hello::NotHello;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16 * 1024 + 256 {
            return Hello::NotHello;
        }
        let Some(payload) = rest.get(5..5 + len) else {
            return Hello::Incomplete;
        };
        handshake.extend_from_slice(payload);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != 0x01 {
                return Hello::NotHello;
            }
            let need = 4
                + (usize::from(handshake[1]) << 16
                    | usize::from(handshake[2]) << 8
                    | usize::from(handshake[3]));
            if need > MAX_HELLO {
                return Hello::NotHello;
            }
            if handshake.len() >= need {
                return match client_hello(&handshake[4..need]) {
                    Some(h) => Hello::Complete(h),
                    None => Hello::NotHello,
                };
            }
        }
    }
}

fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".into();
    }
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The server name of an SNI extension's body (RFC 6066 section 3: the first `host_name`).
fn server_name(data: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            let name = std::str::from_utf8(name).ok()?;
            return Some(name.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    None
}

/// A ClientHello body (after the handshake header): its JA4, server name and ALPN list.
fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.take(32)?;
    r.vec8()?;
    let mut ciphers: Vec<u16> = u16s(r.vec16()?).filter(|c| !is_grease(*c)).collect();
    r.vec8()?;
    let mut extensions = Vec::new();
    let (mut sni, mut versions, mut sig_algs) = (false, Vec::new(), Vec::new());
    let (mut server, mut protocols) = (None, Vec::new());
    if !r.0.is_empty() {
        let mut ext = Reader(r.vec16()?);
        while !ext.0.is_empty() {
            let kind = ext.u16()?;
            let data = ext.vec16()?;
            if is_grease(kind) {
                continue;
            }
            extensions.push(kind);
            let mut d = Reader(data);
            match kind {
                0x0000 => {
                    sni = true;
                    server = server_name(data);
                }
                0x0010 => {
                    let mut list = Reader(d.vec16()?);
                    while !list.0.is_empty() {
                        protocols.push(list.vec8()?.to_vec());
                    }
                }
                0x002b => versions = u16s(d.vec8()?).filter(|v| !is_grease(*v)).collect(),
                0x000d => sig_algs = u16s(d.vec16()?).filter(|v| !is_grease(*v)).collect(),
                _ => {}
            }
        }
    }
    let version = versions.iter().copied().max().unwrap_or(legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let alpn = match protocols.first().map(Vec::as_slice) {
        Some([first, .., last]) | Some([first @ last]) => {
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", *first as char, *last as char)
            } else {
                let (f, l) = (format!("{first:02x}"), format!("{last:02x}"));
                format!("{}{}", &f[..1], &l[1..])
            }
        }
        _ => "00".into(),
    };
    let a = format!(
        "t{version}{}{:02}{:02}{alpn}",
        if sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        extensions.len().min(99),
    );
    ciphers.sort_unstable();
    let mut sorted: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|e| *e != 0x0000 && *e != 0x0010)
        .collect();
    sorted.sort_unstable();
    let mut c = hex_list(&sorted);
    if !sig_algs.is_empty() {
        c.push('_');
        c.push_str(&hex_list(&sig_algs));
    }
    Some(ClientHello {
        ja4: format!("{a}_{}_{}", hash12(&hex_list(&ciphers)), hash12(&c)),
        server_name: server,
        alpn: protocols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given parts.
    fn hello(ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend(((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend(c.to_be_bytes());
        }
        body.extend([1, 0]);
        let mut ext = Vec::new();
        for (k, d) in extensions {
            ext.extend(k.to_be_bytes());
            ext.extend((d.len() as u16).to_be_bytes());
            ext.extend(d);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend(hs);
        rec
    }

    fn list16(v: &[u16]) -> Vec<u8> {
        let mut out = ((v.len() * 2) as u16).to_be_bytes().to_vec();
        for x in v {
            out.extend(x.to_be_bytes());
        }
        out
    }

    /// Chrome's ClientHello as listed by a JA4 service (`ja4_ro`), in the order sent, with
    /// GREASE added: its published JA4 is t13d1516h2_8daaf6152771_d8a2da3f94cd.
    fn chrome() -> Vec<u8> {
        let ciphers = [
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sig = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let mut alpn = vec![0, 12, 2, b'h', b'2'];
        alpn.extend([8]);
        alpn.extend(b"http/1.1");
        let mut sni = vec![0, 14, 0, 0, 11];
        sni.extend(b"example.com");
        let ext: Vec<(u16, Vec<u8>)> = vec![
            (0x1a1a, vec![]),
            (0x002d, vec![1, 1]),
            (0x0033, vec![0, 0]),
            (0x0010, alpn),
            (0xfe0d, vec![0; 8]),
            (0x0017, vec![]),
            (0x44cd, vec![0, 3, 2, b'h', b'2']),
            (0x0000, sni),
            (0x000b, vec![1, 0]),
            (0x000a, list16(&[0x11ec, 0x001d, 0x0017, 0x0018])),
            (0x002b, vec![6, 0x3a, 0x3a, 3, 4, 3, 3]),
            (0xff01, vec![0]),
            (0x0023, vec![]),
            (0x0012, vec![]),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x000d, list16(&sig)),
            (0x001b, vec![2, 0, 2]),
            (0x4a4a, vec![0]),
        ];
        hello(&ciphers, &ext)
    }

    #[test]
    fn chrome_has_its_published_fingerprint_and_its_name_and_protocols_are_read() {
        assert_eq!(
            fingerprint(&chrome()),
            Hello::Complete(ClientHello {
                ja4: "t13d1516h2_8daaf6152771_d8a2da3f94cd".into(),
                server_name: Some("example.com".into()),
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            })
        );
    }

    #[test]
    fn partial_records_wait_and_other_bytes_are_not_hellos() {
        let c = chrome();
        for cut in [0, 3, 5, 40, c.len() - 1] {
            assert_eq!(fingerprint(&c[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        assert_eq!(fingerprint(b"GET / HTTP/1.1\r\n"), Hello::NotHello);
        assert_eq!(
            fingerprint(&[0x16, 0x03, 0x01, 0, 4, 2, 0, 0, 0]),
            Hello::NotHello
        );
    }

    #[test]
    fn a_hello_split_across_records_and_without_sni_alpn_or_signatures() {
        let one = hello(&[0x1301, 0x002f], &[(0x002b, vec![2, 3, 3])]);
        let Hello::Complete(h) = fingerprint(&one) else {
            panic!("not parsed")
        };
        assert!(h.ja4.starts_with("t12i020100_"), "{}", h.ja4);
        assert_eq!((h.server_name.as_deref(), h.alpn.len()), (None, 0));
        // The same handshake in two records.
        let hs = &one[5..];
        let (a, b) = hs.split_at(20);
        let mut two = vec![0x16, 3, 1, 0, a.len() as u8];
        two.extend(a);
        two.extend([0x16, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend(b);
        assert_eq!(fingerprint(&two), Hello::Complete(h));
    }
}
