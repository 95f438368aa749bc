//! Rule evaluation cost: 100 compiled rules of the kinds a zone writes (paths, methods, user
//! agents, query strings with url_decode, header maps, IP sets), evaluated against one request
//! that matches none of them (the common case: every rule runs). Goal: ≤ 2 µs per request.
//! Also the managed rule set against the same request.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgenet_rules::expr::{Expression, Request};

struct Req;

impl Request for Req {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn uri(&self) -> &[u8] {
        b"/products/shoes/42?color=red&size=9"
    }
    fn path(&self) -> &[u8] {
        b"/products/shoes/42"
    }
    fn query(&self) -> &[u8] {
        b"color=red&size=9"
    }
    fn host(&self) -> &[u8] {
        b"shop.example.com"
    }
    fn version(&self) -> &[u8] {
        b"HTTP/2"
    }
    fn ip_src(&self) -> IpAddr {
        IpAddr::from([198, 51, 100, 23])
    }
    fn ssl(&self) -> bool {
        true
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        let h: &[(&str, &[u8])] = &[
            (
                "user-agent",
                b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
            ),
            ("accept", b"text/html,application/xhtml+xml"),
            ("accept-language", b"en-US,en;q=0.9"),
            ("cookie", b"session=abc123; theme=dark"),
            ("referer", b"https://shop.example.com/products"),
        ];
        h.iter().filter(|(n, _)| *n == name).nth(i).map(|(_, v)| *v)
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        [
            "user-agent",
            "accept",
            "accept-language",
            "cookie",
            "referer",
        ]
        .get(i)
        .map(|n| n.as_bytes())
    }
}

fn rules() -> Vec<Expression> {
    let mut out = Vec::new();
    for i in 0..20 {
        out.push(format!(r#"http.request.uri.path wildcard "/admin{i}/*""#));
        out.push(format!(
            r#"http.request.method eq "POST" and starts_with(http.request.uri.path, "/api/v{i}/")"#
        ));
        out.push(format!(r#"lower(http.user_agent) contains "scanner{i}""#));
        out.push(format!(
            r#"url_decode(http.request.uri.query) matches "(?i)union\\s+select{i}""#
        ));
        out.push(format!(
            r#"ip.src in {{10.{i}.0.0/16 192.0.2.{i}}} or any(http.request.headers["x-attack-{i}"][*] eq "1")"#
        ));
    }
    out.iter()
        .map(|e| Expression::compile(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    assert_eq!(rules.len(), 100);
    assert!(
        !rules.iter().any(|r| r.matches(&Req)),
        "the request matches no rule"
    );
    c.bench_function("100 rules, no match", |b| {
        b.iter(|| {
            black_box(&rules)
                .iter()
                .filter(|r| r.matches(black_box(&Req)))
                .count()
        })
    });
}

fn managed(c: &mut Criterion) {
    let rules = edgenet_rules::managed::compiled();
    assert!(
        !rules.iter().any(|(_, e)| e.matches(&Req)),
        "the request matches no managed rule"
    );
    c.bench_function("managed rule set, no match", |b| {
        b.iter(|| {
            black_box(rules)
                .iter()
                .filter(|(_, e)| e.matches(black_box(&Req)))
                .count()
        })
    });
}

criterion_group!(benches, bench, managed);
criterion_main!(benches);
