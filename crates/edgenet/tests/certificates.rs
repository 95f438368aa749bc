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

/// What `tls_swap.py` saw across a swap from serial `from` to `to`: no failed request, new
/// connections first given `from` and last `to`, kept connections `from` all along.
fn assert_swapped(seen: &Value, from: &str, to: &str) {
    let serials = |key: &str| -> Vec<String> {
        seen[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| norm(s.as_str().unwrap()))
            .collect()
    };
    assert_eq!(seen["failures"], json!([]), "{seen}");
    let new = serials("serials");
    assert_eq!(new.first(), Some(&norm(from)), "{seen}");
    assert_eq!(new.last(), Some(&norm(to)), "{seen}");
    assert!(
        serials("kept_serials").iter().all(|s| *s == norm(from)),
        "kept connections keep theirs: {seen}"
    );
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
    std::thread::sleep(Duration::from_secs(1));
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
    std::thread::sleep(Duration::from_secs(1));
    let seen = swap.stop();
    assert_swapped(&seen, &first, &second);
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

/// A process of the test's, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Proc(cmd.stdout(out).stderr(err).spawn().unwrap())
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// pebble with pebble-challtestsrv as its DNS (names answer 127.0.0.1 unless [`Pebble::point`]
/// says otherwise), certificates valid for `validity` seconds, `ocsp` as the responder it
/// names in them, validating on `http` and `tls` ports.
struct Pebble {
    _dns: Proc,
    _pebble: Proc,
    dns_management: u16,
    directory: String,
    management: u16,
    /// The CA of pebble's own TLS certificate (for its directory and management).
    tls_ca: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http: u16, tls: u16, ocsp: u16, validity: u64) -> Pebble {
        let (dns, dns_management) = (free_port(), free_port());
        let dns_proc = spawn(
            Command::new("pebble-challtestsrv").args([
                "-management",
                &format!("127.0.0.1:{dns_management}"),
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]),
            &dir.join("challtestsrv.log"),
        );
        // pebble serves its directory over HTTPS only: a certificate for 127.0.0.1 from a CA
        // of the test's.
        let ca = TestCa::new();
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.join("pebble.pem"), cert).unwrap();
        std::fs::write(dir.join("pebble.key"), key).unwrap();
        let tls_ca = dir.join("pebble-tls-ca.pem");
        std::fs::write(&tls_ca, ca.cert.pem()).unwrap();
        let (acme, management) = (free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": http,
            "tlsPort": tls,
            "ocspResponderURL": format!("http://127.0.0.1:{ocsp}/"),
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(dir.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            &dir.join("pebble.log"),
        );
        let up = eventually(Duration::from_secs(20), || {
            listening(acme) && listening(management) && listening(dns_management)
        });
        assert!(
            up,
            "pebble: {}",
            std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
        );
        Pebble {
            _dns: dns_proc,
            _pebble: pebble,
            dns_management,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management,
            tls_ca,
        }
    }

    /// Makes the mock DNS answer `host` with `ip`.
    fn point(&self, host: &str, ip: &str) {
        let body = json!({"host": format!("{host}."), "addresses": [ip]}).to_string();
        let r = curl(&[
            "-X",
            "POST",
            "-d",
            &body,
            &format!("http://127.0.0.1:{}/add-a", self.dns_management),
        ]);
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// A PEM from pebble's management interface (`roots/0`, `intermediates/0`, ...).
    fn get(&self, what: &str) -> String {
        let ca = self.tls_ca.display().to_string();
        let r = curl(&[
            "--cacert",
            &ca,
            &format!("https://127.0.0.1:{}/{what}", self.management),
        ]);
        assert_eq!(r.status, 200, "{what}: {r:?}");
        r.body
    }
}

/// Starts `openssl ocsp` answering for `serials` (all good), signing with `signer`.
fn ocsp_responder(dir: &Path, port: u16, serials: &[&str], signer: (&Path, &Path)) -> Proc {
    let index: String = serials
        .iter()
        .map(|s| {
            format!(
                "V\t991231235959Z\t\t{}\tunknown\t/CN=test\n",
                s.to_ascii_uppercase()
            )
        })
        .collect();
    let index_file = dir.join(format!("index-{port}-{}.txt", serials.len()));
    std::fs::write(&index_file, index).unwrap();
    let log = dir.join(format!("ocsp-{}.log", serials.len()));
    let p = spawn(
        Command::new("openssl")
            .args(["ocsp", "-port", &port.to_string(), "-index"])
            .arg(&index_file)
            .arg("-rsigner")
            .arg(signer.0)
            .arg("-rkey")
            .arg(signer.1)
            .arg("-CA")
            .arg(signer.0)
            .args(["-ndays", "1"]),
        &log,
    );
    // Not a probe connection: OpenSSL's responder serves one connection at a time and waits
    // for ever on one that closes without a request.
    let up = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("waiting for OCSP client connections"))
    });
    assert!(
        up,
        "openssl ocsp did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    p
}

#[test]
fn pebble_issues_over_http01_and_tls_alpn01_renews_with_no_failed_request_and_staples() {
    for (tool, args, package) in [
        ("pebble", &["-h"][..], "pebble"),
        ("pebble-challtestsrv", &["-h"][..], "pebble"),
        ("openssl", &["version"][..], "openssl"),
    ] {
        // `-h` exits 2 with its usage: look for the program rather than a zero status.
        let found = Command::new(tool).args(args).output().is_ok();
        if !found && !support::needs_tool("pebble test", tool, args, package) {
            return;
        }
    }
    let dir = TempDir::new("pebble");
    let origin = Origin::start("o1");
    let (http, https, ocsp) = (free_port(), free_port(), free_port());
    // Certificates live 60 s: renewed after 40.
    let pebble = Pebble::start(&dir.0, http, https, ocsp, 60);
    let acme_args = |challenge: &str| {
        vec![
            "--acme-directory".to_string(),
            pebble.directory.clone(),
            "--acme-ca".into(),
            pebble.tls_ca.display().to_string(),
            "--acme-challenge".into(),
            challenge.into(),
        ]
    };
    let args = acme_args("http-01");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut control = Control::start_with(None, &refs);
    let token = control.token(&["pop"]);
    let pops: Vec<Pop> = (1..=3)
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
    let root = bundle(&dir.0, "root.pem", &[&pebble.get("roots/0")]);
    let a = account(&control);
    let zones = format!("/v1/accounts/{a}/zones");
    let active = |control: &Control, zone: &str| {
        let path = format!("{zones}/{zone}");
        let ok = eventually(Duration::from_secs(60), || {
            edge(control, &path)["status"] == "active"
        });
        let pack = edge(control, &path);
        let acme: String = pops
            .iter()
            .flat_map(|p| {
                p.stderr()
                    .lines()
                    .filter(|l| l.contains("ACME") || l.contains("acme"))
                    .map(|l| format!("{}: {l}\n", p.ip))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(ok, "{zone}: {pack}\n{acme}");
        pack
    };
    let served_everywhere = |host: &str, serial: &str| {
        for p in &pops {
            let ok = eventually(Duration::from_secs(15), || {
                norm(&s_client(&root, host, &p.ip, https, false).1) == norm(serial)
            });
            let (text, got) = s_client(&root, host, &p.ip, https, false);
            assert!(ok, "{} serves {got} for {host}, not {serial}: {text}", p.ip);
            assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
            let r = https_get(&root, host, &p.ip, https);
            assert_eq!(r.status, 200, "{}: {}", p.ip, r.stderr);
        }
    };

    // HTTP-01: the CA's validation reaches PoP 2 (the name points there); every PoP serves
    // the certificate.
    pebble.point("web.test", "127.0.0.2");
    pebble.point("bad.test", "127.0.0.9");
    let started = Instant::now();
    let r = control.api(
        "POST",
        &zones,
        Some(&zone("web", &["web.test"], &origin)),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pack = active(&control, "web");
    let issued_in = started.elapsed();
    assert_eq!(pack["validation_method"], "http", "{pack}");
    assert!(
        pack["issuer"].as_str().unwrap().contains("Pebble"),
        "{pack}"
    );
    let web1 = pack["serial_number"].as_str().unwrap().to_string();
    served_everywhere("web.test", &web1);
    println!("http-01: issued through pebble in {issued_in:?}");

    // A name the CA cannot reach: the failure is shown, and the next attempt is later.
    let r = control.api(
        "POST",
        &zones,
        Some(&zone("bad", &["bad.test"], &origin)),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("{zones}/bad");
    let failed = eventually(Duration::from_secs(60), || {
        edge(&control, &path)["status"] == "failed"
    });
    let pack = edge(&control, &path);
    assert!(failed, "{pack}");
    assert!(
        pack["failure"].as_str().unwrap().contains("bad.test"),
        "{pack}"
    );
    assert!(pack["next_attempt_on"].is_string(), "{pack}");

    // The staple: no responder yet (the failure is shown), then `openssl ocsp` signing with
    // pebble's intermediate; every PoP staples its good answer.
    let web_path = format!("{zones}/web");
    let ocsp_failed = eventually(Duration::from_secs(15), || {
        edge(&control, &web_path)["ocsp"]["failure"].is_string()
    });
    assert!(ocsp_failed, "{}", edge(&control, &web_path));
    let int = bundle(&dir.0, "int.pem", &[&pebble.get("intermediates/0")]);
    let int_key = bundle(&dir.0, "int.key", &[&pebble.get("intermediate-keys/0")]);
    let responder = ocsp_responder(&dir.0, ocsp, &[&web1], (&int, &int_key));
    let stapled = eventually(Duration::from_secs(30), || {
        edge(&control, &web_path)["ocsp"]["stapled"] == true
    });
    let ocsp_lines: String = control
        .stderr()
        .lines()
        .filter(|l| l.contains("OCSP"))
        .map(|l| format!("{l}\n"))
        .collect();
    let responder_log = std::fs::read_to_string(dir.0.join("ocsp-1.log")).unwrap_or_default();
    assert!(
        stapled,
        "{}\n{ocsp_lines}\n{responder_log}",
        edge(&control, &web_path)
    );
    for p in &pops {
        let ok = eventually(Duration::from_secs(15), || {
            s_client(&root, "web.test", &p.ip, https, true)
                .0
                .contains("Cert Status: good")
        });
        let (text, _) = s_client(&root, "web.test", &p.ip, https, true);
        assert!(
            ok && text.contains("OCSP Response Status: successful"),
            "{}: {text}",
            p.ip
        );
    }
    drop(responder);

    // TLS-ALPN-01 (the control plane restarted to answer it): the validation reaches PoP 3's
    // HTTPS port with only acme-tls/1 offered.
    control.stop();
    control.args = acme_args("tls-alpn-01");
    control.spawn();
    pebble.point("api.test", "127.0.0.3");
    let started = Instant::now();
    let r = control.api(
        "POST",
        &zones,
        Some(&zone("api", &["api.test"], &origin)),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pack = active(&control, "api");
    assert_eq!(pack["validation_method"], "tls-alpn", "{pack}");
    served_everywhere("api.test", pack["serial_number"].as_str().unwrap());
    println!(
        "tls-alpn-01: issued through pebble in {:?}",
        started.elapsed()
    );

    // Renewal of web (due 40 s into its 60): requests on kept and new connections at PoP 1
    // all the way through, and every PoP serves the new serial.
    let swap = Swap::start(&dir.0, "127.0.0.1", https, "web.test", &root);
    let renewed = eventually(Duration::from_secs(70), || {
        let s = edge(&control, &web_path)["serial_number"].clone();
        s.is_string() && s != json!(web1)
    });
    let pack = edge(&control, &web_path);
    assert!(renewed, "{pack}");
    let web2 = pack["serial_number"].as_str().unwrap().to_string();
    served_everywhere("web.test", &web2);
    std::thread::sleep(Duration::from_secs(1));
    let seen = swap.stop();
    assert_swapped(&seen, &web1, &web2);
    println!(
        "renewal: {} requests across it, none failed",
        seen["requests"]
    );
}
