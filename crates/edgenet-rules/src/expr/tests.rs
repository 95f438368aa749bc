//! The Rules language against a test request: fields, operators, functions, logic and the
//! offsets of refusals.

use super::*;

struct Req {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    uri: &'static str,
    host: &'static str,
    ip: &'static str,
    ssl: bool,
    headers: Vec<(&'static str, &'static str)>,
}

impl Request for Req {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn uri(&self) -> &[u8] {
        self.uri.as_bytes()
    }
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    fn query(&self) -> &[u8] {
        self.query.as_bytes()
    }
    fn host(&self) -> &[u8] {
        self.host.as_bytes()
    }
    fn version(&self) -> &[u8] {
        b"HTTP/1.1"
    }
    fn ip_src(&self) -> IpAddr {
        self.ip.parse().unwrap()
    }
    fn ssl(&self) -> bool {
        self.ssl
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .nth(i)
            .map(|(_, v)| v.as_bytes())
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        self.headers.get(i).map(|(n, _)| n.as_bytes())
    }
}

fn req() -> Req {
    Req {
        method: "POST",
        path: "/wp-admin/Login.php",
        query: "id=1%27%20OR%201=1&q=a+b",
        uri: "/wp-admin/Login.php?id=1%27%20OR%201=1&q=a+b",
        host: "shop.example.com",
        ip: "203.0.113.7",
        ssl: true,
        headers: vec![
            ("user-agent", "sqlmap/1.7"),
            ("cookie", "session=abc; theme=dark"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "text/html"),
            ("accept", "application/json"),
        ],
    }
}

fn yes(e: &str) {
    let x = Expression::compile(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert!(x.matches(&req()), "should match: {e}");
}

fn no(e: &str) {
    let x = Expression::compile(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert!(!x.matches(&req()), "should not match: {e}");
}

fn refused(e: &str, pos: usize, contains: &str) {
    let err = Expression::compile(e).unwrap_err();
    assert_eq!(err.pos, pos, "{e}: {err}");
    assert!(err.message.contains(contains), "{e}: {err}");
}

#[test]
fn fields_and_comparison_operators() {
    yes(r#"http.request.method eq "POST""#);
    yes(r#"http.request.method == "POST" && http.host ne "other""#);
    yes(r#"http.request.uri.path contains "wp-admin""#);
    yes(r#"http.request.uri.query contains "OR""#);
    yes(r#"http.request.uri eq "/wp-admin/Login.php?id=1%27%20OR%201=1&q=a+b""#);
    yes(r#"http.user_agent matches "(?i)^sqlmap""#);
    yes(r#"http.user_agent ~ "sqlmap""#);
    yes(r#"http.cookie contains "session=""#);
    no(r#"http.referer ne """#);
    yes(r#"http.request.version eq "HTTP/1.1""#);
    yes(
        r#"http.host gt "a" and http.host lt "z" and http.host ge "shop" and http.host le "shop.f""#,
    );
    yes("ssl");
    no("not ssl");
    yes("ip.src eq 203.0.113.7");
    yes("ip.src in {10.0.0.0/8 203.0.113.0/24}");
    no("ip.src in {10.0.0.0/8 2001:db8::/32}");
    yes(r#"http.request.method in {"GET" "POST"}"#);
    no(r#"http.request.method in {"GET" "HEAD"}"#);
}

#[test]
fn wildcards_functions_and_headers() {
    yes(r#"http.host wildcard "*.EXAMPLE.com""#);
    no(r#"http.host strict wildcard "*.EXAMPLE.com""#);
    yes(r#"http.host strict wildcard "shop.*.com""#);
    yes(r#"lower(http.request.uri.path) eq "/wp-admin/login.php""#);
    yes(r#"upper(http.request.method) eq "POST""#);
    yes(r#"lower(http.user_agent) contains "sqlmap/1.7""#);
    yes(r#"lower(http.request.uri.path) contains "login.php""#);
    no(r#"lower(http.request.uri.path) contains "login.phpx""#);
    no(r#"lower(http.user_agent) contains "SQLMAP""#);
    yes(r#"lower(http.request.uri.path) ne "/other""#);
    yes(r#"http.request.uri.path contains "Login""#);
    no(r#"http.request.uri.path contains "login""#);
    yes(r#"url_decode(http.request.uri.query) contains "' OR 1=1""#);
    yes(r#"url_decode(http.request.uri.query) contains "q=a b""#);
    yes(r#"starts_with(http.request.uri.path, "/wp-")"#);
    yes(r#"ends_with(lower(http.request.uri.path), ".php")"#);
    yes("len(http.request.uri.path) eq 19");
    yes("len(http.request.uri.path) in {10..20 99}");
    yes(r#"concat(http.request.method, " ", http.host) eq "POST shop.example.com""#);
    yes(r#"http.request.headers["X-Forwarded-For"][0] eq "10.0.0.1""#);
    yes(r#"any(http.request.headers["accept"][*] eq "application/json")"#);
    no(r#"all(http.request.headers["accept"][*] eq "application/json")"#);
    yes(r#"all(http.request.headers["accept"][*] contains "/")"#);
    no(r#"any(http.request.headers["missing"][*] eq "x")"#);
    no(r#"all(http.request.headers["missing"][*] eq "x")"#);
    yes(r#"any(lower(http.request.headers.names[*]) eq "cookie")"#);
    yes(r#"any(len(http.request.headers["accept"][*]) gt 10)"#);
}

#[test]
fn logic_and_precedence() {
    yes("ssl or not ssl");
    no("ssl and not ssl");
    yes("ssl xor not ssl");
    no("ssl ^^ ssl");
    // not > and > xor > or
    yes(r#"not ssl and ssl or ssl"#);
    no(r#"not (ssl or ssl)"#);
    yes(r#"ssl and (http.request.method eq "GET" or http.request.method eq "POST")"#);
    yes(r#"!(http.request.method eq "GET") && ssl || ssl"#);
}

#[test]
fn errors_name_the_offset_and_reason() {
    refused(r#"http.request.method eq"#, 22, "needs a quoted string");
    refused(r#"http.request.metod eq "GET""#, 0, "unknown field");
    refused(r#"http.host eq "a" and"#, 20, "expected a field");
    refused(r#"ip.src eq "1.2.3.4""#, 10, "IP address");
    refused(r#"ip.src lt 1.2.3.4"#, 10, "only eq or ne");
    refused(r#"http.host"#, 9, "needs a comparison");
    refused(r#"http.host matches "(""#, 18, "regular expression");
    refused(r#"(ssl"#, 4, "expected `)`");
    refused(r#"http.host eq "unterminated"#, 13, "unterminated string");
    refused(r#"len(http.host) in {5..2}"#, 22, "range");
    refused(r#"frobnicate(http.host) eq "a""#, 0, "unknown function");
    refused(r#"ssl ssl"#, 4, "expected `and`");
    refused(r#"http.host in {"a" 1}"#, 18, "holds only such values");
    refused(r#"http.host eq "a" $"#, 17, "unexpected character");
    let deep = format!("{}ssl{}", "(".repeat(100), ")".repeat(100));
    assert!(Expression::compile(&deep)
        .unwrap_err()
        .message
        .contains("nested deeper"));
}

#[test]
fn raw_strings_and_escapes() {
    yes(r##"http.user_agent matches r"sqlmap/\d""##);
    yes(r###"http.user_agent matches r#"sql"?map"#"###);
    let e = Expression::compile(r#"http.host eq "a\"b\\c""#).unwrap();
    assert!(!e.matches(&req()));
}

#[test]
fn case_insensitive_search() {
    assert!(contains_ci(b"Hello World", b"world"));
    assert!(contains_ci(b"WORLD", b"world"));
    assert!(contains_ci(b"wwworld", b"world"));
    assert!(!contains_ci(b"worl", b"world"));
    assert!(contains_ci(b"anything", b""));
    assert!(!contains_ci(b"", b"a"));
}

#[test]
fn first_bytes_of_regular_expressions() {
    use super::FirstBytes;
    let f = |p: &str| {
        FirstBytes::of(p).map(|f| {
            let mut v = f.0[..f.1].to_vec();
            v.sort_unstable();
            v
        })
    };
    assert_eq!(f(r"(?i)union\s+select"), Some(b"Uu".to_vec()));
    assert_eq!(f("^/admin"), Some(b"/".to_vec()));
    assert_eq!(f("(a|b|c)x"), Some(b"abc".to_vec()));
    assert_eq!(f("(a|b|c|d)x"), None, "more than three");
    assert_eq!(f(".*x"), None, "a match may start anywhere");
    assert_eq!(f("x?y"), Some(b"xy".to_vec()));
    // The prefilter never changes a result.
    for (pattern, hay) in [
        (r"(?i)union\s+select", "1 UNION  SELECT 2"),
        (r"(?i)union\s+select", "no"),
        ("x?y", "zzy"),
        ("(?-u)\\xc0\\xae", "a\u{c0}"),
    ] {
        let e = Expression::compile(&format!("http.request.uri matches r#\"{pattern}\"#")).unwrap();
        let plain = regex::bytes::Regex::new(pattern).unwrap();
        let r = Req { uri: hay, ..req() };
        assert_eq!(
            e.matches(&r),
            plain.is_match(hay.as_bytes()),
            "{pattern} on {hay}"
        );
    }
}
