//! Test harness: starts the real `edgenet` binary, the Python test origin, and runs curl.
#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A port that was free a moment ago, never one this test process handed out before (the
/// kernel may give the same ephemeral port to two binds in a row once the first is closed).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("edgenet-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python test origin (tests/support/origin.py), killed on drop.
pub struct Origin {
    pub port: u16,
    child: Child,
}

impl Origin {
    pub fn start(name: &str) -> Origin {
        Origin::start_on(name, 0)
    }

    pub fn start_on(name: &str, port: u16) -> Origin {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/origin.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(name)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test origin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("origin prints its port");
        Origin { port, child }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests counted by the origin (all but /hits, /health, /control).
    pub fn hits(&self) -> u64 {
        let r = curl(&[&format!("http://127.0.0.1:{}/hits", self.port)]);
        r.body.trim().parse().unwrap()
    }

    /// Requests the origin served for `path` (query ignored).
    pub fn hits_for(&self, path: &str) -> u64 {
        let r = curl(&[&format!("http://127.0.0.1:{}/hits?path={path}", self.port)]);
        r.body.trim().parse().unwrap()
    }

    /// From now on `/obj/...` fails: `"500"`, `"close"` (the connection closed before an
    /// answer), or `"none"` to answer again.
    #[allow(dead_code)]
    pub fn fail(&self, mode: &str) {
        let r = curl(&[
            "-X",
            "POST",
            &format!("http://127.0.0.1:{}/control/fail?mode={mode}", self.port),
        ]);
        assert_eq!(r.status, 200, "{r:?}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `edgenet pop`, killed on drop.
pub struct Pop {
    pub child: Child,
    pub dir: TempDir,
    /// The address its listeners are on.
    pub ip: String,
    pub http: u16,
    pub https: u16,
    pub admin: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Arguments after `--config FILE` (the control plane to follow).
    pub extra: Vec<String>,
    /// Environment variables it is started with.
    pub env: Vec<(String, String)>,
}

/// The listener, admin and access log sections for a PoP whose zones are `zones` (TOML text).
pub fn config_text(http: u16, https: u16, admin: u16, log: &Path, zones: &str) -> String {
    format!(
        r#"
[node]
name = "test-pop"
threads = 2
drain_timeout = "10s"

[[listeners]]
address = "127.0.0.1:{http}"
protocol = "http"

[[listeners]]
address = "127.0.0.1:{https}"
protocol = "https"

[admin]
address = "127.0.0.1:{admin}"
token_file = "admin-token"
socket = "admin.sock"

[access_log]
output = "file"
path = "{log}"

{zones}
"#,
        log = log.display()
    )
}

/// A zone with a generated certificate in `dir` and the given origins (TOML text).
pub fn zone(name: &str, hosts: &[&str], origins: &[String], extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    let mut s = format!(
        r#"
[[zones]]
name = "{name}"
hostnames = [{hosts}]
[zones.tls]
cert = "{name}.pem"
key = "{name}.key"
generate_if_missing = true
[zones.origins]
connect_timeout = "1s"
read_timeout = "5s"
retries = 1
"#,
        hosts = hosts.join(", ")
    );
    for o in origins {
        s.push_str(&format!("[[zones.origins.servers]]\naddress = \"{o}\"\n"));
    }
    s.push_str(extra);
    s
}

impl Pop {
    /// Starts a PoP with `zones` and waits until `/ready` answers.
    pub fn start(zones: &str) -> Pop {
        Pop::start_with(zones, 2, &[])
    }

    /// [`Pop::start`] with `threads` proxy threads and the environment variables `env`.
    pub fn start_with(zones: &str, threads: usize, env: &[(&str, &str)]) -> Pop {
        let dir = TempDir::new("pop");
        let (http, https, admin) = (free_port(), free_port(), free_port());
        let log = dir.0.join("access.log");
        let config = dir.0.join("edgenet.toml");
        let text = config_text(http, https, admin, &log, zones).replacen(
            "threads = 2",
            &format!("threads = {threads}"),
            1,
        );
        std::fs::write(&config, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Pop::spawn(&dir.0, &config, &[], &env);
        let pop = Pop {
            child,
            dir,
            ip: "127.0.0.1".into(),
            http,
            https,
            admin,
            config,
            log,
            extra: Vec::new(),
            env,
        };
        pop.wait_ready();
        pop
    }

    fn spawn(dir: &Path, config: &Path, extra: &[String], env: &[(String, String)]) -> Child {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_edgenet"))
            .args(["pop", "--config"])
            .arg(config)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Starts a PoP named `name` that takes its zones from the control plane at `control`
    /// (HTTP listener only) and waits until it is ready.
    pub fn start_following(control: &str, name: &str, token: &str) -> Pop {
        Pop::start_following_with(control, name, token, None)
    }

    /// [`Pop::start_following`] with a backbone listener on `backbone` (127.0.0.1).
    pub fn start_following_with(
        control: &str,
        name: &str,
        token: &str,
        backbone: Option<u16>,
    ) -> Pop {
        let listen = Listen {
            ip: "127.0.0.1".into(),
            http: free_port(),
            https: None,
        };
        Pop::start_following_on(control, name, token, backbone, listen)
    }

    /// [`Pop::start_following_with`] with its client listeners at `listen`.
    pub fn start_following_on(
        control: &str,
        name: &str,
        token: &str,
        backbone: Option<u16>,
        listen: Listen,
    ) -> Pop {
        let token = if token.is_empty() { None } else { Some(token) };
        let dir = TempDir::new("pop");
        let Listen { ip, http, https } = listen;
        let admin = free_port();
        let log = dir.0.join("access.log");
        let config = dir.0.join("edgenet.toml");
        let https_listener = https.map_or(String::new(), |p| {
            format!("[[listeners]]\naddress = \"{ip}:{p}\"\nprotocol = \"https\"\n\n")
        });
        let text = format!(
            "[node]\nname = \"{name}\"\nthreads = 1\ndrain_timeout = \"2s\"\n\n\
             [[listeners]]\naddress = \"{ip}:{http}\"\nprotocol = \"http\"\n\n{https_listener}\
             [admin]\naddress = \"127.0.0.1:{admin}\"\ntoken_file = \"admin-token\"\n\n\
             [access_log]\noutput = \"file\"\npath = \"{}\"\n{}",
            log.display(),
            backbone.map_or(String::new(), |p| format!(
                "\n[backbone]\nlisten = \"127.0.0.1:{p}\"\n"
            ))
        );
        std::fs::write(&config, text).unwrap();
        let mut extra = vec![
            "--control".to_string(),
            control.to_string(),
            "--name".to_string(),
            name.to_string(),
        ];
        if let Some(t) = token {
            extra.extend(["--token".to_string(), t.to_string()]);
        }
        let child = Pop::spawn(&dir.0, &config, &extra, &[]);
        let pop = Pop {
            child,
            dir,
            ip,
            http,
            https: https.unwrap_or(0),
            admin,
            config,
            log,
            extra,
            env: Vec::new(),
        };
        pop.wait_ready();
        pop
    }

    /// Stops the PoP (SIGKILL: no goodbye) and starts it again on the same config and ports.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Pop::spawn(&self.dir.0, &self.config, &self.extra, &self.env);
        self.wait_ready();
    }

    /// Starts `edgenet pop --upgrade` on this PoP's file: the new process becomes this PoP's;
    /// the old one, returned, hands its sockets over, drains and exits.
    pub fn upgrade(&mut self) -> Child {
        let mut extra = self.extra.clone();
        extra.push("--upgrade".into());
        let new = Pop::spawn(&self.dir.0, &self.config, &extra, &self.env);
        std::mem::replace(&mut self.child, new)
    }

    pub fn wait_ready(&self) {
        // Generous: a node with a JavaScript worker compiles it (seconds) before it is ready.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = get_status(self.admin, "/ready") == Some(200);
            let http_up = TcpStream::connect((self.ip.as_str(), self.http)).is_ok();
            if ready && http_up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PoP not ready; stderr:\n{}", self.stderr());
    }

    /// The PoP-local admin token (the node made it at start).
    pub fn admin_token(&self) -> String {
        let file = self.dir.0.join("admin-token");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .to_string()
    }

    /// `curl` arguments that send the PoP-local admin token.
    pub fn admin_auth(&self) -> [String; 2] {
        [
            "-H".into(),
            format!("Authorization: Bearer {}", self.admin_token()),
        ]
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }

    pub fn url(&self, host_path: &str) -> String {
        format!("http://{}:{}{host_path}", self.ip, self.http)
    }

    pub fn metrics(&self) -> String {
        curl(&[&format!("http://127.0.0.1:{}/metrics", self.admin)]).body
    }

    /// The value of one metric line (exact name with labels), or None.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("access log lines are JSON"))
            .collect()
    }

    /// Peak resident memory in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Pop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a PoP's client listeners are.
pub struct Listen {
    /// The address (127.0.0.x).
    pub ip: String,
    /// The HTTP port.
    pub http: u16,
    /// The HTTPS port, if it has one.
    pub https: Option<u16>,
}

/// A curl result.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub http_version: String,
    /// curl's own messages (errors, `-v` output), for failure reports.
    pub stderr: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Runs curl with `args` and returns status, headers (of the final response) and body.
pub fn curl(args: &[&str]) -> Resp {
    let dir = TempDir::new("curl");
    let hdr = dir.0.join("h");
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30", "-D"])
        .arg(&hdr)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(["-o"])
        .arg(dir.0.join("b"))
        .args(args)
        .output()
        .expect("curl runs");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = w.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = parts.next().unwrap_or("").to_string();
    let raw_headers = std::fs::read_to_string(&hdr).unwrap_or_default();
    // Keep the last header block (after any 100 Continue).
    let last = raw_headers
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body =
        String::from_utf8_lossy(&std::fs::read(dir.0.join("b")).unwrap_or_default()).to_string();
    Resp {
        status,
        headers,
        body,
        http_version,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Sends raw bytes on a new connection and returns everything read until close or 3 s.
pub fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Status of a GET on 127.0.0.1:port, or None when nothing answers.
pub fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until `f` is true or `timeout` passes; returns whether it became true.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// A minimal HTTP/1.1 keep-alive client for load loops: one connection, requests in sequence.
pub struct KeepAlive {
    stream: BufReader<TcpStream>,
}

/// One response read by [`KeepAlive`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl KeepAlive {
    pub fn connect(port: u16) -> std::io::Result<KeepAlive> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: BufReader::new(s),
        })
    }

    /// GET `path` with `Host: host`; the response must carry Content-Length (the test origin's do).
    pub fn get(&mut self, host: &str, path: &str) -> std::io::Result<Reply> {
        self.get_with(host, path, &[])
    }

    /// [`KeepAlive::get`] with more header lines.
    pub fn get_with(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        use std::io::{Error, ErrorKind};
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // The server closed the connection before any byte of a response: what an HTTP client
        // may retry on a new connection (RFC 9112 section 9.3.1), told apart as
        // `ConnectionAborted`.
        let before = |e: Error| Error::new(ErrorKind::ConnectionAborted, e);
        self.stream
            .get_mut()
            .write_all(head.as_bytes())
            .map_err(before)?;
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(0) => {
                return Err(before(Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed",
                )))
            }
            Err(e) if line.is_empty() => return Err(before(e)),
            r => {
                r?;
            }
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let reply_len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no Content-Length"))?;
        let mut body = vec![0; reply_len];
        self.stream.read_exact(&mut body)?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// Counts of a load loop.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    /// Each failure: a status other than 200 or an I/O error, as text.
    pub failures: Vec<String>,
    /// Every value of the `watch` response header seen, in order of first appearance.
    pub seen: Vec<String>,
    /// Requests sent again on a new connection ([`load_like_a_client`]).
    pub retried: u64,
}

/// Runs `conns` keep-alive connections sending GET `path` to `host` until `stop` is set.
pub fn load(
    port: u16,
    host: &str,
    path: &str,
    conns: usize,
    watch: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<LoadReport> {
    load_as(port, host, path, conns, watch, stop, false)
}

/// [`load`] as browsers and curl behave while a server process hands over to another: a
/// connection the server ends with `Connection: close` is not used again, and a request on a
/// reused connection that the server closed before any byte of a response is sent once more
/// on a new connection. Any other error, or a second one, is a failure.
pub fn load_like_a_client(
    port: u16,
    host: &str,
    path: &str,
    conns: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<LoadReport> {
    load_as(port, host, path, conns, "", stop, true)
}

fn load_as(
    port: u16,
    host: &str,
    path: &str,
    conns: usize,
    watch: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    like_a_client: bool,
) -> std::thread::JoinHandle<LoadReport> {
    let (host, path, watch) = (host.to_string(), path.to_string(), watch.to_string());
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..conns)
            .map(|_| {
                let (host, path, watch, stop) =
                    (host.clone(), path.clone(), watch.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut report = LoadReport::default();
                    let mut client = None;
                    // Whether the connection in `client` has carried a response.
                    let mut reused = false;
                    while !stop.load(Ordering::Relaxed) {
                        if client.is_none() {
                            match KeepAlive::connect(port) {
                                Ok(c) => (client, reused) = (Some(c), false),
                                Err(e) => {
                                    report.failures.push(format!("connect: {e}"));
                                    continue;
                                }
                            }
                        }
                        let got = client.as_mut().unwrap().get(&host, &path);
                        let retry = like_a_client
                            && reused
                            && got
                                .as_ref()
                                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionAborted);
                        if retry {
                            report.retried += 1;
                            client = None;
                            continue;
                        }
                        reused = true;
                        match got {
                            Ok(r) if r.status == 200 => {
                                report.ok += 1;
                                if like_a_client
                                    && r.header("connection")
                                        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                                {
                                    client = None;
                                }
                                if let Some(v) = r.header(&watch) {
                                    if !report.seen.iter().any(|s| s == v) {
                                        report.seen.push(v.to_string());
                                    }
                                }
                            }
                            Ok(r) => report.failures.push(format!("status {}", r.status)),
                            Err(e) => {
                                report.failures.push(format!("io: {e}"));
                                client = None;
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        let mut total = LoadReport::default();
        for w in workers {
            let r = w.join().unwrap();
            total.ok += r.ok;
            total.retried += r.retried;
            total.failures.extend(r.failures);
            for v in r.seen {
                if !total.seen.contains(&v) {
                    total.seen.push(v);
                }
            }
        }
        total
    })
}

/// A running `edgenet control` on a free port with its data in a temporary directory; killed on
/// drop.
pub struct Control {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub port: u16,
    pub database: Option<String>,
    pub admin_token: String,
    pub distribution: Option<String>,
    /// More arguments of `edgenet control` (an issuer, say).
    pub args: Vec<String>,
}

impl Control {
    /// Starts a control plane (SQLite unless `database` is given) and reads its admin token.
    pub fn start(database: Option<&str>) -> Control {
        Control::start_with(database, &[])
    }

    /// [`Control::start`] with more arguments.
    pub fn start_with(database: Option<&str>, args: &[&str]) -> Control {
        let dir = TempDir::new("control");
        let mut c = Control {
            child: None,
            dir,
            port: free_port(),
            database: database.map(String::from),
            admin_token: String::new(),
            distribution: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        c.spawn();
        c.admin_token = std::fs::read_to_string(c.dir.0.join("data/admin-token"))
            .unwrap()
            .trim()
            .to_string();
        c
    }

    /// Starts a control plane that also distributes through NATS at `nats`.
    pub fn start_with_nats(nats: &str) -> Control {
        let dir = TempDir::new("control");
        let mut c = Control {
            child: None,
            dir,
            port: free_port(),
            database: None,
            admin_token: String::new(),
            distribution: Some(nats.to_string()),
            args: Vec::new(),
        };
        c.spawn();
        c.admin_token = std::fs::read_to_string(c.dir.0.join("data/admin-token"))
            .unwrap()
            .trim()
            .to_string();
        c
    }

    /// Starts the process (again) on the same data and port, and waits until it answers.
    pub fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("stderr.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgenet"));
        cmd.args(["control", "--data"])
            .arg(self.dir.0.join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .current_dir(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(db) = &self.database {
            cmd.args(["--database", db]);
        }
        if let Some(n) = &self.distribution {
            cmd.args(["--distribution", n]);
        }
        cmd.args(&self.args);
        self.child = Some(cmd.spawn().unwrap());
        let ok = eventually(Duration::from_secs(20), || {
            self.dir.0.join("data/admin-token").exists()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(ok, "control plane not up: {}", self.stderr());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }

    /// An API call with the admin token: `method`, path, optional JSON body, extra curl args.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>, extra: &[&str]) -> Resp {
        self.api_as(&self.admin_token, method, path, body, extra)
    }

    /// An API call with `token`.
    pub fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[&str],
    ) -> Resp {
        let url = format!("{}{path}", self.url());
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec!["-X", method, "-H", auth.as_str()];
        if let Some(b) = body {
            args.extend(["-d", b]);
        }
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    }

    /// Creates a token with `scopes` and returns its secret.
    pub fn token(&self, scopes: &[&str]) -> String {
        let body =
            serde_json::json!({"name": format!("test {scopes:?}"), "scopes": scopes}).to_string();
        let r = self.api("POST", "/v1/tokens", Some(&body), &[]);
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["result"]["secret"].as_str().unwrap().to_string()
    }

    /// Registers a PoP.
    pub fn register_pop(&self, name: &str) {
        self.register_pop_at(name, None)
    }

    /// Registers a PoP reachable over the backbone at `127.0.0.1:port`.
    pub fn register_pop_at(&self, name: &str, backbone: Option<u16>) {
        let addresses: Vec<String> = backbone.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let body = serde_json::json!({"name": name, "latitude": 50.1, "longitude": 8.7, "addresses": addresses})
            .to_string();
        let r = self.api("POST", "/v1/pops", Some(&body), &[]);
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// The current configuration version.
    pub fn version(&self) -> i64 {
        self.api("GET", "/v1/status", None, &[]).json()["result"]["version"]
            .as_i64()
            .unwrap()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway PostgreSQL server (Debian's `postgresql` package) on a free port, stopped on
/// drop. As root it runs as the `postgres` user (PostgreSQL refuses to run as root).
pub struct Postgres {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
}

impl Postgres {
    fn bin(name: &str) -> PathBuf {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        versions.sort();
        versions
            .last()
            .map(|v| v.join("bin").join(name))
            .expect("PostgreSQL is installed (apt-get install postgresql)")
    }

    fn as_owner(program: PathBuf) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        let data = dir.0.join("data");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres");
        }
        let out = Postgres::as_owner(Postgres::bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Postgres::as_owner(Postgres::bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres { child, dir, port };
        assert!(
            eventually(Duration::from_secs(20), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "postgres did not start"
        );
        let ok = eventually(Duration::from_secs(10), || {
            Command::new(Postgres::bin("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "edgenet",
                ])
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ok, "createdb");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/edgenet", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM: PostgreSQL's "smart" shutdown; the child is `runuser` or postgres itself.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a test that needs root (`test`, for `why`) can run: true as root. Otherwise it
/// prints why it is skipped and returns false, or, under `CI=true`, where every test must run,
/// fails.
pub fn needs_root(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    cannot_run(
        &format!("{test}: needs root for {why}"),
        "CI runs as root, so this must not be skipped",
    )
}

/// A test that cannot run here (`reason`) is skipped with the reason printed, or, under
/// `CI=true`, where every test must run, fails with `in_ci` (why CI has what it needs).
fn cannot_run(reason: &str, in_ci: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}, and CI=true: {in_ci}");
    }
    eprintln!("SKIPPED {reason}");
    false
}

/// Whether the program `tool` runs (`tool ARGS` succeeds), for a test that needs it (`test`,
/// installed by `package`). Otherwise it prints why the test is skipped and returns false, or,
/// under `CI=true`, fails: `.ci/run` installs every tool a test needs.
#[allow(dead_code)]
pub fn needs_tool(test: &str, tool: &str, args: &[&str], package: &str) -> bool {
    let runs = Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return true;
    }
    cannot_run(
        &format!("{test}: needs {tool} (apt-get install {package})"),
        ".ci/run installs it",
    )
}

/// Runs `scenario` of the namespace rig at `rig` (relative to the crate) against the test
/// binary; it asserts as it goes, exits non-zero on the first failure and prints
/// `scenario NAME: passed` at the end. Skipped (with why) without root.
#[allow(dead_code)]
pub fn rig_scenario(rig: &str, scenario: &str) {
    if !needs_root(&format!("{rig} {scenario}"), "network namespaces") {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rig);
    let out = Command::new("python3")
        .arg(&path)
        .arg(scenario)
        .arg("--edgenet")
        .arg(env!("CARGO_BIN_EXE_edgenet"))
        .env("RUST_LOG", "info")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("scenario {scenario}: passed")),
        "scenario {scenario} did not finish:\n{stdout}"
    );
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// A `nats-server` (Debian's package) on a free port, killed on drop: with JetStream and a
/// leaf-node port (a hub), or as a leaf node of `hub` without JetStream of its own.
pub struct Nats {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
    pub leaf_port: u16,
}

impl Nats {
    pub fn hub() -> Nats {
        Nats::start(None)
    }

    pub fn leaf_of(hub: &Nats) -> Nats {
        Nats::start(Some(hub.leaf_port))
    }

    fn start(hub_leaf_port: Option<u16>) -> Nats {
        let dir = TempDir::new("nats");
        let (port, leaf_port) = (free_port(), free_port());
        let conf = match hub_leaf_port {
            None => format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\", domain: hub }}\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n",
                dir.0.join("js").display()
            ),
            Some(hub) => format!(
                "listen: \"127.0.0.1:{port}\"\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{hub}\" }} ] }}\n"
            ),
        };
        let path = dir.0.join("nats.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("nats.log")).unwrap())
            .spawn()
            .expect("nats-server is installed (apt-get install nats-server)");
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "nats-server did not start"
        );
        Nats {
            child,
            dir,
            port,
            leaf_port,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds a Rust component crate for wasm32-wasip2 and returns its .wasm.
pub fn rust_component(dir: &str, name: &str) -> PathBuf {
    let dir = repo().join(dir);
    let out = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {name} (needs `rustup target add wasm32-wasip2`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

/// Builds examples/workers/hello-js with ComponentizeJS (npm ci first when needed) unless
/// its component is newer than its source.
#[allow(dead_code)]
pub fn js_component() -> PathBuf {
    let dir = repo().join("examples/workers/hello-js");
    let npm = |args: &[&str]| {
        let out = Command::new("npm")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "npm {args:?} in examples/workers/hello-js: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir
        .join("node_modules/@bytecodealliance/componentize-js")
        .exists()
    {
        npm(&["ci", "--no-audit", "--no-fund"]);
    }
    npm(&["run", "build"]);
    dir.join("dist/hello.wasm")
}

/// examples/workers/hello-rust, built.
pub fn hello_rust() -> PathBuf {
    rust_component("examples/workers/hello-rust", "hello_rust")
}
