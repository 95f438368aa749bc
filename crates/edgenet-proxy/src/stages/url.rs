//! Stage 4b, URL normalisation: once the zone is known, its normalisation
//! (`edgenet_http::normalize`) gives the request the one spelling of its path that every later
//! stage reads (zone rules, the WAF, rate limits, worker routes, cache keys); the target as
//! sent is kept for `raw.http.request.*` rules, the access log, and the origin when the zone
//! does not send it the normalised URL. Purge URLs are normalised the same way, so a purge
//! names what the cache keyed.

use edgenet_config::{NormalizationType, UrlNormalization};
use edgenet_http::normalize::{normalize_path, Normalization};
use http::Uri;

use super::Reject;

/// A request target as sent, before normalisation (origin-form: path and query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    target: Vec<u8>,
    path_len: usize,
}

impl Original {
    /// Path and query as sent.
    pub fn target(&self) -> &[u8] {
        &self.target
    }

    /// The path as sent.
    pub fn path(&self) -> &[u8] {
        &self.target[..self.path_len]
    }

    /// The query as sent (without `?`).
    pub fn query(&self) -> &[u8] {
        self.target.get(self.path_len + 1..).unwrap_or(b"")
    }
}

fn kind(t: NormalizationType) -> Normalization {
    match t {
        NormalizationType::Cloudflare => Normalization::Cloudflare,
        NormalizationType::Rfc3986 => Normalization::Rfc3986,
    }
}

/// Normalises a request's target for its zone: `uri` as parsed and `raw` the target as
/// received. `None` when it is normal already (or the zone leaves URLs as sent); else the new
/// target and the original. A path that cannot be normalised safely is a 400.
pub fn normalize(
    n: &UrlNormalization,
    uri: &Uri,
    raw: &[u8],
) -> Result<Option<(Uri, Original)>, Reject> {
    let Some(t) = n.incoming else {
        return Ok(None);
    };
    // Origin-form as received; absolute-form's path and query as parsed; `*` has no path.
    let target: &[u8] = if raw.first() == Some(&b'/') {
        raw
    } else if raw == b"*" {
        return Ok(None);
    } else {
        uri.path_and_query()
            .map_or(b"/", |pq| pq.as_str().as_bytes())
    };
    let path_len = query_start(target);
    let (path, query) = target.split_at(path_len);
    let normal = normalize_path(path, kind(t)).map_err(|u| Reject::new(400, u.reason()))?;
    let Some(normal) = normal else {
        return Ok(None);
    };
    let mut new = normal;
    new.extend_from_slice(&encode_odd(query));
    let uri = Uri::builder()
        .path_and_query(new)
        .build()
        .map_err(|_| Reject::new(400, "the request target cannot be normalised"))?;
    let original = Original {
        target: target.to_vec(),
        path_len,
    };
    Ok(Some((uri, original)))
}

fn query_start(target: &[u8]) -> usize {
    target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len())
}

/// The query with bytes no URI may hold (controls, space, non-ASCII) percent-encoded.
fn encode_odd(query: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(query.len());
    for &b in query {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// A purge's URL (`https://host/path?q`) or prefix (`host/path`), its path normalised as the
/// zone normalises requests.
pub fn normalize_purge(n: &UrlNormalization, url: &str) -> Result<String, Reject> {
    let Some(t) = n.incoming else {
        return Ok(url.to_string());
    };
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let Some(slash) = url[after_scheme..].find('/').map(|i| i + after_scheme) else {
        return Ok(url.to_string());
    };
    let (head, target) = url.split_at(slash);
    let path_len = query_start(target.as_bytes());
    let (path, query) = target.split_at(path_len);
    let normal =
        normalize_path(path.as_bytes(), kind(t)).map_err(|u| Reject::new(400, u.reason()))?;
    Ok(match normal {
        Some(p) => format!("{head}{}{query}", String::from_utf8_lossy(&p)),
        None => url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: UrlNormalization = UrlNormalization {
        incoming: Some(NormalizationType::Cloudflare),
        to_origin: false,
    };

    #[test]
    fn the_target_is_normalised_and_the_original_kept() {
        let raw = b"/x/../%61dmin?q=%61&b=1";
        let uri: Uri = "/x/../%61dmin?q=%61&b=1".parse().unwrap();
        let (new, original) = normalize(&ON, &uri, raw).unwrap().unwrap();
        assert_eq!(new.path(), "/admin");
        assert_eq!(new.query(), Some("q=%61&b=1"), "the query is left as sent");
        assert_eq!(original.path(), b"/x/../%61dmin");
        assert_eq!(original.query(), b"q=%61&b=1");
        assert_eq!(original.target(), raw);
        assert_eq!(
            normalize(&ON, &"/admin?q".parse().unwrap(), b"/admin?q"),
            Ok(None)
        );
        let off = UrlNormalization {
            incoming: None,
            to_origin: false,
        };
        assert_eq!(normalize(&off, &uri, raw), Ok(None));
        let r = normalize(&ON, &"/".parse().unwrap(), b"/a/%00").unwrap_err();
        assert_eq!(r.status, 400);
        assert!(r.reason.contains("NUL"));
    }

    #[test]
    fn absolute_form_and_odd_bytes() {
        let uri: Uri = "/a//b".parse().unwrap();
        let (new, original) = normalize(&ON, &uri, b"http://h.test/a//b")
            .unwrap()
            .unwrap();
        assert_eq!(new.path(), "/a/b");
        assert_eq!(original.target(), b"/a//b");
        let (new, _) = normalize(&ON, &"/".parse().unwrap(), b"/caf\xc3\xa9?x=\xff")
            .unwrap()
            .unwrap();
        assert_eq!(new.to_string(), "/caf%C3%A9?x=%FF");
        assert_eq!(normalize(&ON, &"*".parse().unwrap(), b"*"), Ok(None));
    }

    #[test]
    fn purge_urls_are_normalised_like_requests() {
        assert_eq!(
            normalize_purge(&ON, "https://c.test/x/../%61dmin?v=1").unwrap(),
            "https://c.test/admin?v=1"
        );
        assert_eq!(normalize_purge(&ON, "c.test//img-").unwrap(), "c.test/img-");
        assert_eq!(normalize_purge(&ON, "c.test").unwrap(), "c.test");
        assert!(normalize_purge(&ON, "c.test/../x").is_err());
    }
}
