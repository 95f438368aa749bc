//! The managed rule set against the attack and benign corpora in `corpus/` (sources in
//! `corpus/SOURCES.md`): detection per category and the false-positive rate, with the goals
//! of ≥ 95 % detection and ≤ 1 % false positives.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use edgenet_rules::expr::Request;
use edgenet_rules::managed;

/// A corpus request: a URI and a User-Agent.
struct Line {
    category: String,
    uri: String,
    user_agent: String,
}

impl Request for Line {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn uri(&self) -> &[u8] {
        self.uri.as_bytes()
    }
    fn path(&self) -> &[u8] {
        self.uri.split('?').next().unwrap_or("").as_bytes()
    }
    fn query(&self) -> &[u8] {
        self.uri.split_once('?').map_or("", |(_, q)| q).as_bytes()
    }
    fn host(&self) -> &[u8] {
        b"example.com"
    }
    fn version(&self) -> &[u8] {
        b"HTTP/1.1"
    }
    fn ip_src(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
    fn ssl(&self) -> bool {
        false
    }
    fn header(&self, name: &str, i: usize) -> Option<&[u8]> {
        (name == "user-agent" && i == 0).then_some(self.user_agent.as_bytes())
    }
    fn header_name(&self, i: usize) -> Option<&[u8]> {
        (i == 0).then_some(b"user-agent".as_slice())
    }
}

fn load(name: &str) -> Vec<Line> {
    let path = format!("{}/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            let s = |k: &str| v[k].as_str().expect("corpus field").to_string();
            Line {
                category: s("category"),
                uri: s("uri"),
                user_agent: s("user_agent"),
            }
        })
        .collect()
}

fn hits(l: &Line) -> Vec<&'static str> {
    managed::compiled()
        .iter()
        .filter(|(_, e)| e.matches(l))
        .map(|(r, _)| r.id)
        .collect()
}

#[test]
fn managed_rules_meet_the_corpus_goals() {
    let attacks = load("attack.jsonl");
    let benign = load("benign.jsonl");
    assert!(
        attacks.len() > 1500 && benign.len() >= 3000,
        "corpora are complete"
    );

    let mut per_cat: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for a in &attacks {
        let e = per_cat.entry(a.category.as_str()).or_default();
        e.0 += 1;
        if hits(a).is_empty() {
            missed.push(a.uri.as_str());
        } else {
            e.1 += 1;
        }
    }
    let mut false_positives = Vec::new();
    for b in &benign {
        let h = hits(b);
        if !h.is_empty() {
            false_positives.push((h, b.uri.as_str()));
        }
    }
    for (cat, (n, caught)) in &per_cat {
        println!("{cat}: {caught}/{n} = {:.3}", *caught as f64 / *n as f64);
        assert!(
            *caught as f64 / *n as f64 >= 0.9,
            "{cat} detection below 90%"
        );
    }
    let detection = 1.0 - missed.len() as f64 / attacks.len() as f64;
    let fp = false_positives.len() as f64 / benign.len() as f64;
    println!("missed: {missed:#?}");
    println!("false positives: {false_positives:#?}");
    println!(
        "{{\"waf_detection_rate\": {detection:.4}, \"waf_false_positive_rate\": {fp:.4}, \"attacks\": {}, \"benign\": {}}}",
        attacks.len(),
        benign.len()
    );
    assert!(detection >= 0.95, "detection {detection:.4} below 0.95");
    assert!(fp <= 0.01, "false positives {fp:.4} above 0.01");
}
