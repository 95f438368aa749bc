//! URL normalisation, before anything looks at a path (zone rules, the WAF, rate limits,
//! worker routes, cache keys, purges), so that a rule on `/admin` also sees `/%61dmin`,
//! `/x/../admin` and `//admin`, which an origin would serve as `/admin`.
//!
//! [`Normalization::Rfc3986`] is RFC 3986 section 6.2.2: percent-encodings of unreserved
//! characters decoded (`%61` → `a`), the others in upper case (`%2f` → `%2F`), dot segments
//! removed (section 5.2.4). [`Normalization::Cloudflare`] (the default, as Cloudflare's) also
//! turns back slashes into forward slashes and merges repeated slashes. Bytes a URI cannot
//! hold as they are (controls, space, non-ASCII) are percent-encoded. The query is left as it
//! came: its bytes mean what the origin says they mean.
//!
//! A path that cannot be normalised safely is refused ([`Unsafe`]): an encoded NUL, a percent
//! sign without two hex digits, dot segments that climb above the root.

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalization {
    /// RFC 3986 section 6 plus back slashes to slashes and repeated slashes merged.
    #[default]
    Cloudflare,
    /// RFC 3986 section 6 only.
    Rfc3986,
}

/// Why a path cannot be normalised safely (a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// A NUL byte, raw or as `%00`.
    Nul,
    /// `%` not followed by two hex digits.
    BadPercent,
    /// `/../` with nothing left to remove.
    AboveRoot,
    /// A path that does not start with `/`.
    NotAbsolute,
}

impl Unsafe {
    /// Why, for the 400's body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Unsafe::Nul => "the path holds a NUL (%00)",
            Unsafe::BadPercent => "the path holds a percent sign not followed by two hex digits",
            Unsafe::AboveRoot => "the path's dot segments climb above the root",
            Unsafe::NotAbsolute => "the path does not start with /",
        }
    }
}

/// RFC 3986 section 2.3.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes a path may hold as they are (RFC 3986 `pchar` and `/`, plus `%` of encodings).
fn path_byte(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@/%".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` may need work: a byte other than a plain path byte, or a `.` after a
/// slash, or two slashes. A path without any is normal already (the common case, one scan).
fn may_change(path: &[u8], kind: Normalization) -> bool {
    let mut previous = 0u8;
    for &b in path {
        if b == b'%' || !path_byte(b) || (previous == b'/' && b == b'.') {
            return true;
        }
        if kind == Normalization::Cloudflare && previous == b'/' && b == b'/' {
            return true;
        }
        previous = b;
    }
    false
}

/// The normal form of `path` (no query), or `None` when it is normal already.
pub fn normalize_path(path: &[u8], kind: Normalization) -> Result<Option<Vec<u8>>, Unsafe> {
    if path.first() != Some(&b'/') {
        return Err(Unsafe::NotAbsolute);
    }
    if !may_change(path, kind) {
        return Ok(None);
    }
    // 1. Percent-encodings: unreserved decoded, the rest upper case; bytes that cannot stand
    //    in a path encoded; back slashes to slashes (Cloudflare).
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Unsafe::BadPercent);
            };
            let v = hi << 4 | lo;
            if v == 0 {
                return Err(Unsafe::Nul);
            }
            if unreserved(v) {
                decoded.push(v);
            } else {
                decoded.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]]);
            }
            i += 3;
            continue;
        }
        if b == 0 {
            return Err(Unsafe::Nul);
        }
        if b == b'\\' && kind == Normalization::Cloudflare {
            decoded.push(b'/');
        } else if path_byte(b) {
            decoded.push(b);
        } else {
            decoded.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        i += 1;
    }
    // 2. Repeated slashes merged (Cloudflare).
    if kind == Normalization::Cloudflare {
        decoded.dedup_by(|b, a| *a == b'/' && *b == b'/');
    }
    // 3. Dot segments (RFC 3986 section 5.2.4), refusing any that climb above the root.
    let out = remove_dot_segments(&decoded)?;
    Ok((out != path).then_some(out))
}

/// RFC 3986 section 5.2.4 over an absolute path, segment by segment; `..` at the root is an
/// error rather than dropped, since the origin may resolve it elsewhere.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, Unsafe> {
    let mut segments: Vec<&[u8]> = Vec::new();
    // Split after the leading slash; the last segment may be empty (a trailing slash).
    let parts: Vec<&[u8]> = path[1..].split(|b| *b == b'/').collect();
    let last = parts.len() - 1;
    for (i, seg) in parts.into_iter().enumerate() {
        match seg {
            b"." => {
                // `/a/.` ends in a directory: keep the trailing slash.
                if i == last {
                    segments.push(b"");
                }
            }
            b".." => {
                if segments.pop().is_none() {
                    return Err(Unsafe::AboveRoot);
                }
                if i == last {
                    segments.push(b"");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(p: &str) -> Result<String, Unsafe> {
        normalize_path(p.as_bytes(), Normalization::Cloudflare)
            .map(|o| String::from_utf8(o.unwrap_or_else(|| p.as_bytes().to_vec())).unwrap())
    }

    fn rfc(p: &str) -> Result<String, Unsafe> {
        normalize_path(p.as_bytes(), Normalization::Rfc3986)
            .map(|o| String::from_utf8(o.unwrap_or_else(|| p.as_bytes().to_vec())).unwrap())
    }

    #[test]
    fn every_spelling_of_a_path_becomes_one() {
        for variant in [
            "/admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "/%61%64%6d%69%6e",
            "/x/../admin",
            "/./admin",
            "/x/%2e%2e/admin",
            "/x/.%2E/admin",
            "//admin",
            "/x//..//admin",
            "\\admin",
            "/\\admin",
        ] {
            let v = match variant.strip_prefix('\\') {
                Some(rest) => format!("/{rest}"),
                None => variant.to_string(),
            };
            assert_eq!(cf(&v), Ok("/admin".into()), "{variant}");
        }
        assert_eq!(cf("/a/b/"), Ok("/a/b/".into()));
        assert_eq!(cf("/a/b/."), Ok("/a/b/".into()));
        assert_eq!(cf("/a/b/.."), Ok("/a/".into()));
        assert_eq!(cf("/a/.."), Ok("/".into()));
        assert_eq!(cf("/"), Ok("/".into()));
        assert_eq!(
            cf("/a.b/.c/..d"),
            Ok("/a.b/.c/..d".into()),
            "dots inside names stay"
        );
    }

    #[test]
    fn reserved_encodings_stay_encoded_in_upper_case_and_odd_bytes_are_encoded() {
        assert_eq!(
            cf("/a%2fb"),
            Ok("/a%2Fb".into()),
            "an encoded slash is no separator"
        );
        assert_eq!(cf("/a%3Fb%5c"), Ok("/a%3Fb%5C".into()));
        assert_eq!(cf("/caf\u{e9}"), Ok("/caf%C3%A9".into()));
        assert_eq!(cf("/a b\"<>"), Ok("/a%20b%22%3C%3E".into()));
        assert_eq!(cf("/%7euser"), Ok("/~user".into()));
    }

    #[test]
    fn rfc3986_alone_keeps_slashes_as_they_are() {
        assert_eq!(rfc("//admin"), Ok("//admin".into()));
        assert_eq!(rfc("/a\\b"), Ok("/a%5Cb".into()));
        assert_eq!(rfc("/%61dmin/./x/.."), Ok("/admin/".into()));
        // An empty segment is a segment to RFC 3986: `..` removes it.
        assert_eq!(rfc("/a//../b"), Ok("/a/b".into()));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(cf("/a%00b"), Err(Unsafe::Nul));
        assert_eq!(cf("/a\0b"), Err(Unsafe::Nul));
        assert_eq!(cf("/a%2"), Err(Unsafe::BadPercent));
        assert_eq!(cf("/a%zz"), Err(Unsafe::BadPercent));
        assert_eq!(cf("/../etc/passwd"), Err(Unsafe::AboveRoot));
        assert_eq!(cf("/a/../../b"), Err(Unsafe::AboveRoot));
        assert_eq!(cf("/%2e%2e/b"), Err(Unsafe::AboveRoot));
        assert_eq!(cf("a"), Err(Unsafe::NotAbsolute));
    }

    #[test]
    fn a_normal_path_is_left_alone_and_normalising_twice_changes_nothing() {
        assert_eq!(
            normalize_path(b"/static/app.js", Normalization::Cloudflare),
            Ok(None)
        );
        for p in ["/%61/./b//c/../d%2f", "/x/%2E%2E/y/", "/a\\..\\b"] {
            let once = cf(p).unwrap();
            assert_eq!(
                normalize_path(once.as_bytes(), Normalization::Cloudflare),
                Ok(None),
                "{p} -> {once}"
            );
        }
    }
}
