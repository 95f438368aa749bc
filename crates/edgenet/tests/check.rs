//! `edgenet check`: every error listed with its field path, value and reason; certificates that
//! cannot be used are named by file; worker components that would be refused at deploy are
//! named by worker. Snapshot tests of what an operator sees.

mod support;

use std::process::Command;

use expect_test::{expect, Expect};
use support::{hello_rust, TempDir};

/// Runs `edgenet check` on `config` written into a fresh directory (with `files` beside it);
/// returns the exit code and the output with the directory replaced by `$DIR`.
fn check(config: &str, files: &[(&str, &[u8])]) -> (i32, String) {
    check_in(&TempDir::new("check"), config, files)
}

/// [`check`] in `dir`, which outlives it.
fn check_in(dir: &TempDir, config: &str, files: &[(&str, &[u8])]) -> (i32, String) {
    for (name, bytes) in files {
        std::fs::write(dir.0.join(name), bytes).unwrap();
    }
    let path = dir.0.join("edgenet.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgenet"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        text.replace(dir.0.to_str().unwrap(), "$DIR"),
    )
}

fn assert_check(config: &str, files: &[(&str, &[u8])], code: i32, expected: Expect) {
    let (got_code, out) = check(config, files);
    expected.assert_eq(&out);
    assert_eq!(got_code, code, "{out}");
}

fn cert_pair() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

const LISTENERS: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"
[[listeners]]
address = "127.0.0.1:8443"
protocol = "https"
"#;

fn zone_with_tls(cert: &str, key: &str) -> String {
    format!(
        r#"
[[zones]]
name = "a"
hostnames = ["a.test"]
[zones.tls]
cert = "{cert}"
key = "{key}"
[[zones.origins.servers]]
address = "127.0.0.1:8000"
"#
    )
}

#[test]
fn a_valid_config_is_ok() {
    let (cert, key) = cert_pair();
    assert_check(
        &(LISTENERS.to_string() + &zone_with_tls("a.pem", "a.key")),
        &[("a.pem", cert.as_bytes()), ("a.key", key.as_bytes())],
        0,
        expect![[r#"
            $DIR/edgenet.toml: ok (2 listener(s), 1 zone(s), 0 worker(s) compiled)
        "#]],
    );
}

#[test]
fn every_invalid_value_is_listed_with_path_value_and_reason() {
    let config = r#"
[node]
name = ""
threads = 0

[[listeners]]
address = "127.0.0.1:99999"
protocol = "http"

[[zones]]
name = "a"
hostnames = ["a.test", "*.*.bad", ""]
[zones.origins]
connect_timeout = "0s"
[[zones.origins.servers]]
address = "no-port"
weight = 0
[zones.origins.health_check]
path = "health"
healthy_threshold = 0

[[zones]]
name = "a"
hostnames = ["a.test"]
[[zones.origins.servers]]
address = "127.0.0.1:8000"
[[zones.request_headers]]
action = "set"
name = "bad header"
value = "x"
"#;
    assert_check(
        config,
        &[],
        1,
        expect![[r#"
        $DIR/edgenet.toml: node.name: must be 1 to 63 characters of letters, digits, '-', '_' or '.'
        $DIR/edgenet.toml: node.threads: "0" must be at least 1
        $DIR/edgenet.toml: listeners[0].address: "127.0.0.1:99999" is not a socket address (IP:port, [IPv6]:port)
        $DIR/edgenet.toml: zones[0].hostnames[1]: "*.*.bad" may contain '*' only as the whole leftmost label
        $DIR/edgenet.toml: zones[0].hostnames[2]: is not a hostname: must be 1 to 253 characters
        $DIR/edgenet.toml: zones[0].origins.servers[0].weight: "0" must be between 1 and 1000
        $DIR/edgenet.toml: zones[0].origins.servers[0].address: "no-port" is not host:port
        $DIR/edgenet.toml: zones[0].origins.connect_timeout: "0s" must be longer than zero
        $DIR/edgenet.toml: zones[0].origins.health_check.path: "health" must be an absolute path like /health
        $DIR/edgenet.toml: zones[0].origins.health_check.healthy_threshold: "0" must be between 1 and 100
        $DIR/edgenet.toml: zones[1].name: "a" is used by another zone
        $DIR/edgenet.toml: zones[1].hostnames[0]: "a.test" is already served by zone "a"
        $DIR/edgenet.toml: zones[1].request_headers[0].name: "bad header" is not a valid header name
    "#]],
    );
}

#[test]
fn syntax_errors_and_unknown_fields_name_the_line() {
    assert_check(
        "[node]\nname = \"x\"\ncolour = \"blue\"\n",
        &[],
        1,
        expect![[r#"
            $DIR/edgenet.toml: node.colour: unknown field `colour`, expected one of `name`, `threads`, `drain_timeout` (line 3, column 1)
        "#]],
    );
    assert_check(
        "[[listeners]]\naddress = 8080\n",
        &[],
        1,
        expect![[r#"
            $DIR/edgenet.toml: listeners[0].address: invalid type: integer `8080`, expected a string (line 2, column 11)
        "#]],
    );
}

#[test]
fn unusable_certificates_are_errors_naming_the_file() {
    let (cert, key) = cert_pair();
    let (_, other_key) = cert_pair();
    let config = |c: &str, k: &str| LISTENERS.to_string() + &zone_with_tls(c, k);
    // Missing files.
    assert_check(
        &config("missing.pem", "missing.key"),
        &[],
        1,
        expect![[r#"
        $DIR/edgenet.toml: zones[0].tls.cert: "$DIR/missing.pem" cannot be read: No such file or directory (os error 2)
        $DIR/edgenet.toml: zones[0].tls.key: "$DIR/missing.key" cannot be read: No such file or directory (os error 2)
    "#]],
    );
    // Not PEM at all.
    assert_check(
        &config("garbage.pem", "a.key"),
        &[("garbage.pem", b"hello\n"), ("a.key", key.as_bytes())],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].tls.cert: "$DIR/garbage.pem" contains no PEM certificate (-----BEGIN CERTIFICATE-----)
        "#]],
    );
    // A PEM block whose contents are not a certificate.
    assert_check(
        &config("broken.pem", "a.key"),
        &[
            (
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            ),
            ("a.key", key.as_bytes()),
        ],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].tls.cert: "$DIR/broken.pem" certificate #1 is not a valid X.509 certificate: invalid peer certificate: BadEncoding
        "#]],
    );
    // A key that belongs to another certificate.
    assert_check(
        &config("a.pem", "other.key"),
        &[
            ("a.pem", cert.as_bytes()),
            ("other.key", other_key.as_bytes()),
        ],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].tls.key: "$DIR/other.key" does not match the certificate: keys may not be consistent: KeyMismatch
        "#]],
    );
    // A device that never ends is refused, not read into memory.
    assert_check(
        &config("/dev/zero", "a.key"),
        &[("a.key", key.as_bytes())],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].tls.cert: "/dev/zero" is larger than 1048576 bytes
        "#]],
    );
    // The certificate file given as the key.
    assert_check(
        &config("a.pem", "a.pem"),
        &[("a.pem", cert.as_bytes())],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].tls.key: "$DIR/a.pem" contains no usable PEM private key: no items found
        "#]],
    );
}

#[test]
fn anycast_errors_name_the_field() {
    let config = r#"
[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[anycast]
local_as = 0
router_id = "0.0.0.0"
listen = ["0.0.0.0:1790", "nowhere"]
prefixes = ["192.0.2.1/24", "2001:db8::/129"]
lo_addresses = ["198.51.100.1/32", "192.0.2.1"]
communities = ["65536:1"]
large_communities = ["1:2"]
check_interval = "1ms"

[[anycast.peers]]
address = "10.0.0.1"
asn = 65000
hold_time = "2s"
keepalive = "5s"
prepend = 20
md5_password = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901"
import = ["10.0.0.0/8 le 4", "10.0.0.0/8 lt 24"]
families = ["ipv4", "ipx"]
bfd = { min_tx = "0ms", multiplier = 0 }

[[anycast.peers]]
address = "10.0.0.1"
asn = 65001
local_address = "2001:db8::1"

[[anycast.checks]]
name = "both"
http = "http://127.0.0.1/"
tcp = "127.0.0.1:1"

[[anycast.checks]]
name = "bad-url"
http = "ftp://127.0.0.1/"
rise = 0
"#;
    assert_check(
        config,
        &[],
        1,
        expect![[r#"
            $DIR/edgenet.toml: anycast.local_as: "0" must be between 1 and 4294967295
            $DIR/edgenet.toml: anycast.router_id: "0.0.0.0" must be a non-zero IPv4 address (the BGP identifier)
            $DIR/edgenet.toml: anycast.listen[1]: "nowhere" is not a socket address (IP:port, [IPv6]:port)
            $DIR/edgenet.toml: anycast.prefixes[0]: "192.0.2.1/24" has host bits set (the network is 192.0.2.0/24)
            $DIR/edgenet.toml: anycast.prefixes[1]: "2001:db8::/129" has a prefix length longer than the address
            $DIR/edgenet.toml: anycast.lo_addresses[0]: "198.51.100.1/32" is in none of anycast.prefixes
            $DIR/edgenet.toml: anycast.lo_addresses[1]: "192.0.2.1" is not an address with a prefix length (192.0.2.1/32)
            $DIR/edgenet.toml: anycast.communities[0]: "65536:1" is not ASN:value (two 16-bit numbers)
            $DIR/edgenet.toml: anycast.large_communities[0]: "1:2" is not global:local1:local2 (three 32-bit numbers)
            $DIR/edgenet.toml: anycast.peers[0].md5_password: "(hidden)" must be 1 to 80 bytes
            $DIR/edgenet.toml: anycast.peers[0].hold_time: "2s" must be 0 or whole seconds from 3s to 65535s
            $DIR/edgenet.toml: anycast.peers[0].keepalive: "5s" must be longer than zero and at most a third of hold_time
            $DIR/edgenet.toml: anycast.peers[0].prepend: "20" must be at most 16
            $DIR/edgenet.toml: anycast.peers[0].import[0]: "10.0.0.0/8 le 4" needs prefix length <= ge <= le
            $DIR/edgenet.toml: anycast.peers[0].import[1]: "10.0.0.0/8 lt 24" has "lt" where "ge" or "le" was expected
            $DIR/edgenet.toml: anycast.peers[0].families[1]: "ipx" must be "ipv4" or "ipv6"
            $DIR/edgenet.toml: anycast.peers[0].bfd.min_tx: "0s" must be between 1ms and 60s
            $DIR/edgenet.toml: anycast.peers[0].bfd.multiplier: "0" must be at least 1
            $DIR/edgenet.toml: anycast.peers[1].local_address: "2001:db8::1" is not in the peer address's family
            $DIR/edgenet.toml: anycast.peers[1].address: "10.0.0.1" is listed twice
            $DIR/edgenet.toml: anycast.check_interval: "1ms" must be between 10ms and 60s
            $DIR/edgenet.toml: anycast.checks[0]: "both" needs exactly one of http or tcp
            $DIR/edgenet.toml: anycast.checks[1].rise: "0" must be between 1 and 100
            $DIR/edgenet.toml: anycast.checks[1].http: "ftp://127.0.0.1/" must start with http:// or https://
        "#]],
    );
}

#[test]
fn worker_errors_name_the_field() {
    let config = r#"
[workers]
max_memory = "64MiB"

[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[[zones]]
name = "a"
hostnames = ["a.test", "*.b.test"]
[[zones.origins.servers]]
address = "127.0.0.1:8000"
[[zones.workers]]
name = "w"
component = "missing.wasm"
routes = ["api/*", "c.test/x", "x.b.test/a*b", "*.b.test/ok/*"]
allowed_hosts = ["elsewhere.test", "q.b.test"]
env = { "A=B" = "1", SAME = "x" }
secrets = { SAME = "s.txt", GONE = "gone.txt" }
[zones.workers.limits]
memory = "128MiB"
cpu_time = "0s"
subrequests_in_flight = 0
[[zones.workers]]
name = "w"
component = "w.wasm"
routes = []
"#;
    assert_check(
        config,
        &[("w.wasm", b"\0asm"), ("s.txt", b"secret")],
        1,
        expect![[r#"
            $DIR/edgenet.toml: zones[0].workers[0].component: "$DIR/missing.wasm" cannot be read: No such file or directory (os error 2)
            $DIR/edgenet.toml: zones[0].workers[0].routes[0]: "api/*" host "api" is not one of the zone's hostnames
            $DIR/edgenet.toml: zones[0].workers[0].routes[1]: "c.test/x" host "c.test" is not one of the zone's hostnames
            $DIR/edgenet.toml: zones[0].workers[0].routes[2]: "x.b.test/a*b" may only have a * at the end of its path
            $DIR/edgenet.toml: zones[0].workers[0].env.A=B: "A=B" must be a name without '=' or NUL
            $DIR/edgenet.toml: zones[0].workers[0].secrets.GONE: "$DIR/gone.txt" cannot be read: No such file or directory (os error 2)
            $DIR/edgenet.toml: zones[0].workers[0].secrets.SAME: "SAME" is also in env
            $DIR/edgenet.toml: zones[0].workers[0].limits.memory: "134217728" is more than workers.max_memory (67108864 bytes)
            $DIR/edgenet.toml: zones[0].workers[0].limits.cpu_time: "0s" must be between 1ms and 30s
            $DIR/edgenet.toml: zones[0].workers[0].limits.subrequests_in_flight: "0" must be between 1 and 1000
            $DIR/edgenet.toml: zones[0].workers[1].name: "w" is used by another worker of the zone
            $DIR/edgenet.toml: zones[0].workers[1].routes: a worker needs at least one route
            $DIR/edgenet.toml: zones[0].workers[0].allowed_hosts[0]: "elsewhere.test" is not served by any zone of this node (a worker's requests go through the node's own cache and origins)
        "#]],
    );
}

#[test]
fn worker_components_are_compiled_and_bad_ones_refused_by_name() {
    let hello = hello_rust();
    let zone = |workers: &str| {
        format!(
            r#"
[workers]
artifact_dir = "artifacts"

[[listeners]]
address = "127.0.0.1:8080"
protocol = "http"

[[zones]]
name = "a"
hostnames = ["a.test"]
[[zones.origins.servers]]
address = "127.0.0.1:8000"
[[zones.workers]]
name = "hello"
component = "{}"
routes = ["/hello/*"]
{workers}"#,
            hello.display()
        )
    };
    let bad = r#"
[[zones.workers]]
name = "truncated"
component = "truncated.wasm"
routes = ["/t"]
[[zones.workers]]
name = "core"
component = "core.wasm"
routes = ["/c"]
"#;
    let files: &[(&str, &[u8])] = &[
        ("truncated.wasm", b"\0asm"),
        ("core.wasm", b"\0asm\x01\0\0\0"),
    ];
    let dir = TempDir::new("check");
    let (code, out) = check_in(&dir, &zone(bad), files);
    expect![[r#"
        $DIR/edgenet.toml: zones[0].workers[1] ("truncated"): $DIR/truncated.wasm: is not a usable wasi:http/proxy component: failed to parse WebAssembly module: unexpected end-of-file (at offset 0x4)
        $DIR/edgenet.toml: zones[0].workers[2] ("core"): $DIR/core.wasm: is not a usable wasi:http/proxy component: failed to parse WebAssembly module: attempted to parse a wasm module with a component parser
    "#]].assert_eq(&out);
    assert_eq!(code, 1, "{out}");

    let (code, out) = check_in(&dir, &zone(""), &[]);
    expect![[r#"
        $DIR/edgenet.toml: ok (1 listener(s), 1 zone(s), 1 worker(s) compiled)
    "#]]
    .assert_eq(&out);
    assert_eq!(code, 0, "{out}");
    // The node's artifact cache now holds the compiled hello (and nothing of the refused ones),
    // so a node started next deploys it without compiling.
    let artifacts: Vec<_> = std::fs::read_dir(dir.0.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].ends_with(".cwasm"), "{artifacts:?}");
}

/// Runs `edgenet pop` on `config` in `dir`; it must exit (refusing to start) within 20 s.
fn pop_refuses(dir: &TempDir, config: &str) -> (i32, String) {
    let path = dir.0.join("edgenet.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgenet"))
        .args(["pop", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("edgenet pop started with an unprotected admin listener");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (
        status.code().unwrap_or(-1),
        err.replace(dir.0.to_str().unwrap(), "$DIR"),
    )
}

#[test]
fn a_public_admin_address_without_tokens_is_refused_at_start() {
    let config = |admin: &str| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:{}\"\nprotocol = \"http\"\n\n[admin]\n{admin}\n",
            support::free_port()
        )
    };
    let dir = TempDir::new("admin");
    let (code, err) = pop_refuses(
        &dir,
        &config("address = \"0.0.0.0:19999\"\nauth = \"none\""),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("admin.auth")
            && err.contains("not a loopback address")
            && err.contains("insecure_public"),
        "{err}"
    );
    let (code, out) = check_in(
        &dir,
        &config("address = \"0.0.0.0:19999\"\nauth = \"none\""),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("admin.auth"), "{out}");

    // A token file others may read is refused too, naming the file and the fix.
    use std::os::unix::fs::PermissionsExt;
    let token = dir.0.join("admin-token");
    std::fs::write(&token, "enp_x\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = pop_refuses(
        &dir,
        &config("address = \"127.0.0.1:19999\"\ntoken_file = \"admin-token\""),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("$DIR/admin-token") && err.contains("chmod 600"),
        "{err}"
    );
}
