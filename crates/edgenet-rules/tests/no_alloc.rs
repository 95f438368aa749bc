//! Evaluation does not allocate: after a first evaluation has warmed the scratch buffers and
//! the regex caches, evaluating rules that copy (`lower`, `upper`, `url_decode`, `concat`),
//! search, match regular expressions and walk header maps allocates nothing. Checked with a
//! counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgenet_rules::expr::{Expression, Request};
use edgenet_rules::managed;

/// The system allocator, counting allocations. (A global allocator is `unsafe` to implement;
/// this one only forwards.)
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Req;

impl Request for Req {
    fn method(&self) -> &[u8] {
        b"POST"
    }
    fn uri(&self) -> &[u8] {
        b"/Search%20Results?q=Caf%C3%A9+cr%C3%A8me&page=2"
    }
    fn path(&self) -> &[u8] {
        b"/Search%20Results"
    }
    fn query(&self) -> &[u8] {
        b"q=Caf%C3%A9+cr%C3%A8me&page=2"
    }
    fn host(&self) -> &[u8] {
        b"Shop.Example.com"
    }
    fn version(&self) -> &[u8] {
        b"HTTP/1.1"
    }
    fn ip_src(&self) -> IpAddr {
        IpAddr::from([203, 0, 113, 9])
    }
    fn ssl(&self) -> bool {
        true
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        let h: &[(&str, &[u8])] = &[
            (
                "user-agent",
                b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            ),
            ("cookie", b"session=a%20b; theme=dark"),
            ("x-tag", b"One"),
            ("x-tag", b"Two"),
        ];
        h.iter().filter(|(n, _)| *n == name).nth(i).map(|(_, v)| *v)
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        ["user-agent", "cookie", "x-tag", "x-tag"]
            .get(i)
            .map(|n| n.as_bytes())
    }
}

#[test]
fn evaluation_allocates_nothing_once_warm() {
    let sources = [
        r#"lower(http.host) eq "shop.example.com" and upper(http.request.method) eq "POST""#,
        r#"url_decode(http.request.uri.query) contains "crème""#,
        r#"url_decode(url_decode(http.request.uri)) matches "(?i)caf.+cr""#,
        r#"concat(http.host, http.request.uri.path, "/x") contains "Results/x""#,
        r#"any(lower(http.request.headers["x-tag"][*]) eq "two")"#,
        r#"all(http.request.headers.names[*] in {"user-agent" "cookie" "x-tag"})"#,
        r#"len(url_decode(http.cookie)) gt 5 and ip.src in {203.0.113.0/24}"#,
        r#"http.user_agent wildcard "mozilla/*firefox*" and starts_with(http.request.uri.path, "/Search")"#,
        r#"lower(url_decode(http.request.uri.path)) eq "/search results""#,
    ];
    let rules: Vec<Expression> = sources
        .iter()
        .map(|s| Expression::compile(s).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
    let managed = managed::compiled();
    let evaluate = || {
        let ours = rules.iter().filter(|r| r.matches(&Req)).count();
        let theirs = managed.iter().filter(|(_, e)| e.matches(&Req)).count();
        (ours, theirs)
    };
    assert_eq!(
        evaluate(),
        (rules.len(), 0),
        "every rule matches, no managed rule does"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        std::hint::black_box(evaluate());
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocated, 0, "allocations in 1000 evaluations");
}
