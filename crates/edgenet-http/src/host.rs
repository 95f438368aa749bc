//! Host names from clients (Host, `:authority`, SNI): the port stripped, and the wildcard
//! suffixes a name could match. Shared by zone routing and TLS certificate lookup.

/// The wildcard suffixes that could match `name`, longest first: `a.b.example.com` yields
/// `.b.example.com`, then `.example.com`, then `.com`. Stops at an empty label, which no
/// wildcard may match.
pub fn wildcard_suffixes(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = name;
    std::iter::from_fn(move || {
        let dot = rest.find('.')?;
        if dot == 0 {
            return None;
        }
        let suffix = &rest[dot..];
        rest = &rest[dot + 1..];
        Some(suffix)
    })
}

/// Strips the port from a Host value, keeping IPv6 literals in brackets.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_and_ipv6_literals_keep_their_brackets() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("[::1"), "[::1");
        assert_eq!(host_without_port("example.com:http"), "example.com:http");
        assert_eq!(host_without_port(":80"), "");
    }

    #[test]
    fn suffixes_longest_first_and_none_after_an_empty_label() {
        let all: Vec<&str> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(all, [".b.example.com", ".example.com", ".com"]);
        assert_eq!(wildcard_suffixes("localhost").count(), 0);
        assert_eq!(wildcard_suffixes(".example.com").count(), 0);
        assert_eq!(wildcard_suffixes("a..com").collect::<Vec<_>>(), ["..com"]);
    }
}
