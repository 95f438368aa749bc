//! `edgenet check`: every error listed with its field path, value and reason; certificates that
//! cannot be used are named by file. Snapshot tests of what an operator sees.

mod support;

use std::process::Command;

use expect_test::{expect, Expect};
use support::TempDir;

/// Runs `edgenet check` on `config` written into a fresh directory (with `files` beside it);
/// returns the exit code and the output with the directory replaced by `$DIR`.
fn check(config: &str, files: &[(&str, &[u8])]) -> (i32, String) {
    let dir = TempDir::new("check");
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
            $DIR/edgenet.toml: ok (2 listener(s), 1 zone(s))
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
