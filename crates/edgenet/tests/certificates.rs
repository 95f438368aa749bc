//! HTTPS for zones made through the API, with real processes: `edgenet control` (its local CA,
//! or pebble, Let's Encrypt's ACME test server, with pebble-challtestsrv as its DNS), three
//! `edgenet pop --control` with HTTPS listeners, curl and `openssl s_client` as clients, an
//! `openssl ocsp` responder. What a user sees: every PoP serves the zone's certificate by SNI,
//! a renewal or a replaced upload reaches every PoP with no failed request, a PoP restarted
//! with the control plane down serves what it had, and no answer, stream line or file at rest
//! holds a private key in the clear.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{curl, eventually, free_port, Control, Listen, Origin, Pop, TempDir};

/// `curl --cacert CA --resolve HOST:PORT:IP https://HOST:PORT/`.
fn https_get(ca: &Path, host: &str, ip: &str, port: u16) -> support::Resp {
    let resolve = format!("{host}:{port}:{ip}");
    let ca = ca.display().to_string();
    let url = format!("https://{host}:{port}/echo");
    curl(&["--cacert", &ca, "--resolve", &resolve, &url])
}

/// What `openssl s_client` sees at IP:PORT for `host`: its whole output (verification and,
/// with `status`, the OCSP staple), and the served leaf's serial in lower-case hex.
fn s_client(ca: &Path, host: &str, ip: &str, port: u16, status: bool) -> (String, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("{ip}:{port}"),
        "-servername",
        host,
    ])
    .args(["-verify_hostname", host, "-CAfile"])
    .arg(ca)
    .stdin(Stdio::null());
    if status {
        cmd.arg("-status");
    }
    let out = cmd.output().expect("openssl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let pem: String = text
        .split_inclusive('\n')
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .take_while(|l| !l.starts_with("-----END CERTIFICATE"))
        .collect::<String>()
        + "-----END CERTIFICATE-----\n";
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let serial = String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    (text, serial)
}

/// A serial without leading zeros, as openssl prints it and the API stores it.
fn norm(serial: &str) -> String {
    let s = serial.trim_start_matches('0').to_ascii_lowercase();
    if s.is_empty() {
        "0".into()
    } else {
        s
    }
}

fn account(control: &Control) -> String {
    let r = control.api("POST", "/v1/accounts", Some(r#"{"name": "shop inc"}"#), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["result"]["id"].as_str().unwrap().to_string()
}

fn zone(name: &str, hosts: &[&str], origin: &Origin) -> String {
    json!({"name": name, "hostnames": hosts, "origins": {"servers": [{"address": origin.addr()}]}})
        .to_string()
}

/// The zone's edge certificate as the API shows it.
fn edge(control: &Control, path: &str) -> Value {
    let r = control.api("GET", &format!("{path}/ssl/certificate_packs"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["result"]["items"][0].clone()
}

/// Three PoPs following `control`, each with HTTPS, on 127.0.0.1, .2 and .3 at the same two
/// ports (as anycast PoPs answer on the same address and port).
fn three_pops(control: &Control) -> (Vec<Pop>, u16, u16) {
    let token = control.token(&["pop"]);
    let (http, https) = (free_port(), free_port());
    let pops = (1..=3)
        .map(|i| {
            let name = format!("pop{i}");
            control.register_pop(&name);
            let listen = Listen {
                ip: format!("127.0.0.{i}"),
                http,
                https: Some(https),
            };
            Pop::start_following_on(&control.url(), &name, &token, None, listen)
        })
        .collect();
    (pops, http, https)
}

/// A CA of the test's own (made with rcgen) for certificates to upload.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "uploaded test CA");
        TestCa {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A certificate for `names` it signed and its key, PEM.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (leaf.pem(), key.serialize_pem())
    }
}

/// `tls_swap.py` against one PoP until [`Swap::stop`].
struct Swap {
    child: Child,
    stop: PathBuf,
}

impl Swap {
    fn start(dir: &Path, ip: &str, port: u16, host: &str, ca: &Path) -> Swap {
        let stop = dir.join("stop");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_swap.py");
        let child = Command::new("python3")
            .arg(script)
            .args([ip, &port.to_string(), host])
            .arg(ca)
            .arg(&stop)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Swap { child, stop }
    }

    fn stop(self) -> Value {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// A file of PEM certificates made of `parts`.
fn bundle(dir: &Path, name: &str, parts: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, parts.concat()).unwrap();
    path
}

#[test]
fn a_zone_made_with_one_call_is_served_over_https_at_every_pop_and_uploads_swap_in() {
    let origin = Origin::start("o1");
    let control = Control::start_with(None, &["--local-ca"]);
    let (mut pops, _, https) = three_pops(&control);
    let local_ca = control.dir.0.join("data/zones-ca.pem");
    let a = account(&control);
    let zpath = format!("/v1/accounts/{a}/zones/shop");

    // One call: the zone. Every PoP then serves it over HTTPS with a certificate of the local CA.
    let started = Instant::now();
    let r = control.api(
        "POST",
        &format!("/v1/accounts/{a}/zones"),
        Some(&zone("shop", &["shop.test", "www.shop.test"], &origin)),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for p in &pops {
        let ok = eventually(Duration::from_secs(20), || {
            https_get(&local_ca, "www.shop.test", &p.ip, https).status == 200
        });
        assert!(
            ok,
            "{}: {}",
            p.ip,
            https_get(&local_ca, "www.shop.test", &p.ip, https).stderr
        );
    }
    println!(
        "edge certificate served by 3 PoPs {:?} after the zone was made",
        started.elapsed()
    );
    let pack = edge(&control, &zpath);
    assert_eq!(pack["status"], "active", "{pack}");
    assert_eq!(
        pack["hosts"],
        json!(["shop.test", "www.shop.test"]),
        "{pack}"
    );
    let edge_serial = pack["serial_number"].as_str().unwrap().to_string();
    for p in &pops {
        let (text, serial) = s_client(&local_ca, "shop.test", &p.ip, https, false);
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert_eq!(norm(&serial), norm(&edge_serial), "{}", p.ip);
    }
    let reported = eventually(Duration::from_secs(15), || {
        let pops = edge(&control, &zpath)["pops"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        pops.len() == 3
            && pops
                .iter()
                .all(|p| p["detail"] == format!("serial {edge_serial}"))
    });
    assert!(reported, "{}", edge(&control, &zpath));
    let expiry = pops[0].metric("edgenet_tls_certificate_expiry_seconds{zone=\"shop\"}");
    let expires: i64 = jiff_free_unix(pack["expires_on"].as_str().unwrap());
    assert_eq!(expiry, Some(expires as f64));

    // An upload whose key is not the certificate's is refused by field; nothing changes.
    let certs = format!("{zpath}/custom_certificates");
    let dir = TempDir::new("uploads");
    let ca = TestCa::new();
    let (chain, key) = ca.leaf(&["shop.test"]);
    let (_, other_key) = ca.leaf(&["shop.test"]);
    let body = json!({"certificate": chain, "private_key": other_key}).to_string();
    let r = control.api("POST", &certs, Some(&body), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["field"], "private_key", "{}", r.body);
    assert!(!r.body.contains("PRIVATE KEY"), "{}", r.body);

    // A good one is served at every PoP in place of the edge certificate for its name, and
    // replacing it swaps it in with no failed request, on kept and new connections.
    let local_pem = std::fs::read_to_string(&local_ca).unwrap();
    let trust = bundle(&dir.0, "trust.pem", &[&ca.cert.pem(), &local_pem]);
    let body = json!({"certificate": chain, "private_key": key}).to_string();
    let r = control.api("POST", &certs, Some(&body), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["result"]["id"].as_str().unwrap().to_string();
    let first = r.json()["result"]["serial_number"]
        .as_str()
        .unwrap()
        .to_string();
    for p in &pops {
        let ok = eventually(Duration::from_secs(15), || {
            norm(&s_client(&trust, "shop.test", &p.ip, https, false).1) == norm(&first)
        });
        assert!(
            ok,
            "{} serves {}",
            p.ip,
            s_client(&trust, "shop.test", &p.ip, https, false).1
        );
        let (_, www) = s_client(&trust, "www.shop.test", &p.ip, https, false);
        assert_eq!(
            norm(&www),
            norm(&edge_serial),
            "the edge certificate still serves www"
        );
    }
    let swap = Swap::start(&dir.0, "127.0.0.2", https, "shop.test", &trust);
    std::thread::sleep(Duration::from_millis(500));
    let (chain2, key2) = ca.leaf(&["shop.test"]);
    let body = json!({"certificate": chain2, "private_key": key2}).to_string();
    let r = control.api("PATCH", &format!("{certs}/{id}"), Some(&body), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json()["result"]["serial_number"]
        .as_str()
        .unwrap()
        .to_string();
    for p in &pops {
        let ok = eventually(Duration::from_secs(15), || {
            norm(&s_client(&trust, "shop.test", &p.ip, https, false).1) == norm(&second)
        });
        assert!(ok, "{} did not swap to {second}", p.ip);
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = swap.stop();
    assert_eq!(seen["failures"], json!([]), "{seen}");
    let serials: Vec<String> = seen["serials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| norm(s.as_str().unwrap()))
        .collect();
    assert_eq!(serials.first(), Some(&norm(&first)), "{seen}");
    assert_eq!(serials.last(), Some(&norm(&second)), "{seen}");
    let kept: Vec<String> = seen["kept_serials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| norm(s.as_str().unwrap()))
        .collect();
    assert!(
        kept.iter().all(|s| *s == norm(&first)),
        "kept connections keep theirs: {seen}"
    );
    println!("swap: {} requests, none failed", seen["requests"]);

    // No key in the clear: not in an answer, the stream, the control plane's database, or a
    // PoP's files (whose state file is its user's alone).
    let key_body: String = key2.lines().filter(|l| !l.starts_with("-----")).collect();
    let r = control.api("GET", &certs, None, &[]);
    assert_eq!(r.status, 200);
    let r2 = control.api("GET", &format!("{certs}/{id}"), None, &[]);
    let pop_token = control.token(&["pop"]);
    let stream = control.api_as(
        &pop_token,
        "GET",
        "/v1/stream?pop=pop1",
        None,
        &["--max-time", "2"],
    );
    for text in [
        &r.body,
        &r2.body,
        &stream.body,
        &edge(&control, &zpath).to_string(),
    ] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_body[..32]),
            "{text}"
        );
    }
    assert!(
        stream
            .body
            .contains(&chain2.lines().nth(1).unwrap().to_string()),
        "the chain is streamed"
    );
    let db = std::fs::read(control.dir.0.join("data/control.db")).unwrap();
    let wal = std::fs::read(control.dir.0.join("data/control.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_body[..32]),
            "a key in the database"
        );
    }
    for (i, p) in pops.iter().enumerate() {
        let state = p.dir.0.join(format!("pop{}.control-state.json", i + 1));
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&key_body[..32]));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", state.display());
    }

    // With the control plane down, a restarted PoP serves what it had.
    let mut control = control;
    control.stop();
    pops[2].restart();
    let r = https_get(&trust, "shop.test", "127.0.0.3", https);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(
        norm(&s_client(&trust, "shop.test", "127.0.0.3", https, false).1),
        norm(&second)
    );
    let r = https_get(&local_ca, "www.shop.test", "127.0.0.3", https);
    assert_eq!(r.status, 200, "{}", r.stderr);
}

/// Unix seconds of an RFC 3339 UTC time as the API writes it (`2027-03-03T18:21:33Z`).
fn jiff_free_unix(t: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", t, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
