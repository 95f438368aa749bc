//! Stage 3b: ACME challenges. While the control plane's CA validates a name, every PoP answers
//! its HTTP-01 challenge (`GET /.well-known/acme-challenge/TOKEN` for that name: the key
//! authorization, RFC 8555 section 8.3) before any zone's rules, redirects or workers see the
//! request; a token the PoP was not given goes on to the zone (its origin may run ACME of its
//! own). TLS-ALPN-01 is answered before TLS, by the node's ClientHello layer, from the same
//! table.

use std::collections::HashMap;

use edgenet_protocol::{ChallengeProvision, ChallengeType};

/// The challenges the control plane streamed, by token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenges {
    by_token: HashMap<String, ChallengeProvision>,
}

impl Challenges {
    /// The table of these challenges.
    pub fn new<'a>(all: impl IntoIterator<Item = &'a ChallengeProvision>) -> Challenges {
        Challenges {
            by_token: all
                .into_iter()
                .map(|c| (c.token.clone(), c.clone()))
                .collect(),
        }
    }

    /// The HTTP-01 answer to a request for `path` on `host` (without its port), if it is one.
    pub fn http01(&self, host: Option<&str>, path: &str) -> Option<&str> {
        let token = edgenet_certs::acme::http01_token(path)?;
        let c = self.by_token.get(token)?;
        let host = host?.trim_end_matches('.');
        (c.kind == ChallengeType::Http01 && c.domain.eq_ignore_ascii_case(host))
            .then_some(c.key_authorization.as_str())
    }

    /// The key authorization of the TLS-ALPN-01 challenge for `domain`, if one is running.
    pub fn tls_alpn01(&self, domain: &str) -> Option<&str> {
        self.by_token
            .values()
            .find(|c| c.kind == ChallengeType::TlsAlpn01 && c.domain.eq_ignore_ascii_case(domain))
            .map(|c| c.key_authorization.as_str())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(kind: ChallengeType, domain: &str, token: &str) -> ChallengeProvision {
        ChallengeProvision {
            kind,
            domain: domain.into(),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
        }
    }

    #[test]
    fn a_token_is_answered_for_its_own_name_only() {
        let t = Challenges::new(&[
            challenge(ChallengeType::Http01, "shop.test", "tok1"),
            challenge(ChallengeType::TlsAlpn01, "api.test", "tok2"),
        ]);
        let path = "/.well-known/acme-challenge/tok1";
        assert_eq!(t.http01(Some("shop.test"), path), Some("tok1.thumb"));
        assert_eq!(t.http01(Some("SHOP.test."), path), Some("tok1.thumb"));
        assert_eq!(t.http01(Some("other.test"), path), None, "another name");
        assert_eq!(t.http01(None, path), None);
        assert_eq!(
            t.http01(Some("shop.test"), "/.well-known/acme-challenge/nope"),
            None
        );
        assert_eq!(
            t.http01(Some("api.test"), "/.well-known/acme-challenge/tok2"),
            None,
            "a TLS-ALPN-01 token is not served over HTTP"
        );
        assert_eq!(t.tls_alpn01("API.test"), Some("tok2.thumb"));
        assert_eq!(t.tls_alpn01("shop.test"), None);
    }
}
