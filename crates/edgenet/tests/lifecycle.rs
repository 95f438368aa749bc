//! The PoP's life under load: reloads (valid and invalid), graceful shutdown, upgrading the
//! binary (`edgenet pop --upgrade`), and 1 GiB bodies streamed through with bounded memory.

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn header_rule(value: &str) -> String {
    format!(
        "[[zones.response_headers]]\naction = \"set\"\nname = \"x-config\"\nvalue = \"{value}\"\n"
    )
}

/// `n` GET `path` requests to `host` through curl, each on a thread of its own.
fn in_flight(pop: &Pop, host: &str, path: &str, n: usize) -> Vec<std::thread::JoinHandle<Resp>> {
    (0..n)
        .map(|_| {
            let (url, host) = (pop.url(path), format!("Host: {host}"));
            std::thread::spawn(move || curl(&["-H", &host, &url]))
        })
        .collect()
}

/// How `child` exited; fails with `what()` if it still runs `limit` after `since`.
fn exit_within(
    child: &mut std::process::Child,
    since: Instant,
    limit: Duration,
    what: impl Fn() -> String,
) -> std::process::ExitStatus {
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(since.elapsed() < limit, "{}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reloads_valid_and_invalid_configs_under_load_without_a_failed_request() {
    let o = Origin::start("o");
    let pop = Pop::start(&zone("r", &["r.test"], &[o.addr()], &header_rule("v1")));
    let text = std::fs::read_to_string(&pop.config).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = load(pop.http, "r.test", "/echo", 8, "x-config", stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    // A valid change: a new header value and a new zone.
    let other = Origin::start("other");
    let v2 = text.replace("value = \"v1\"", "value = \"v2\"")
        + &zone("new", &["new.test"], &[other.addr()], "");
    std::fs::write(&pop.config, &v2).unwrap();
    pop.signal("HUP");
    let ok = "edgenet_config_reloads_total{result=\"ok\"}";
    assert!(
        eventually(Duration::from_secs(5), || pop.metric(ok) == Some(1.0)),
        "{}",
        pop.stderr()
    );
    assert_eq!(pop.metric("edgenet_config_version"), Some(2.0));
    let r = curl(&["-H", "Host: new.test", &pop.url("/echo")]);
    assert_eq!(r.json()["origin"], "other", "the new zone serves");
    std::thread::sleep(Duration::from_millis(300));

    // Invalid changes, each refused with nothing applied: a bad origin address (invalid), then
    // a listener change (valid, but it needs a restart).
    let error = "edgenet_config_reloads_total{result=\"error\"}";
    let v3 = v2.replace("value = \"v2\"", "value = \"v3\"");
    std::fs::write(&pop.config, v3.replace(&other.addr(), "not-an-address")).unwrap();
    pop.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || pop.metric(error) == Some(1.0)));
    let listener = format!("127.0.0.1:{}\"\nprotocol = \"http\"", pop.http);
    let moved = format!("127.0.0.1:{}\"\nprotocol = \"http\"", free_port());
    assert!(v3.contains(&listener));
    std::fs::write(&pop.config, v3.replace(&listener, &moved)).unwrap();
    pop.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || pop.metric(error) == Some(2.0)));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let report = load.join().unwrap();

    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.ok > 100, "load ran: {report:?}");
    assert_eq!(report.seen, ["v1", "v2"], "v3 was never applied");
    assert_eq!(pop.metric("edgenet_config_version"), Some(2.0));
    let stderr = pop.stderr();
    assert!(
        stderr.contains("zones[1].origins.servers[0].address") && stderr.contains("not-an-address"),
        "the refusal names the field and value: {stderr}"
    );
    assert!(
        stderr.contains("changing listeners needs a restart"),
        "{stderr}"
    );
    let r = curl(&["-H", "Host: new.test", &pop.url("/echo")]);
    assert_eq!(r.json()["origin"], "other", "the last good config serves");
}

#[test]
fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0() {
    let o = Origin::start("o");
    let mut pop = Pop::start(&zone("d", &["d.test"], &[o.addr()], ""));
    // An idle keep-alive connection must not hold the drain up.
    let mut idle = KeepAlive::connect(pop.http).unwrap();
    assert_eq!(idle.get("d.test", "/echo").unwrap().status, 200);

    let inflight = in_flight(&pop, "d.test", "/slow?ms=1500", 5);
    assert!(eventually(Duration::from_secs(3), || pop
        .metric("edgenet_inflight_requests")
        == Some(5.0)));

    let sent = Instant::now();
    pop.signal("TERM");
    // New connections are refused once the listeners close.
    assert!(
        eventually(Duration::from_secs(1), || std::net::TcpStream::connect((
            "127.0.0.1",
            pop.http
        ))
        .is_err()),
        "the listener still accepts after SIGTERM"
    );
    for t in inflight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "in-flight request failed: {r:?}");
        assert_eq!(r.json()["path"], "/slow?ms=1500");
    }
    let status = exit_within(&mut pop.child, sent, Duration::from_secs(8), || {
        "the PoP did not exit after draining (drain_timeout is 10s)".to_string()
    });
    assert!(status.success(), "exit status {status}: {}", pop.stderr());
    assert!(pop.stderr().contains("drained"), "{}", pop.stderr());
    let log = pop.access_log();
    assert_eq!(
        log.iter().filter(|l| l["path"] == "/slow?ms=1500").count(),
        5,
        "every in-flight request is logged before exit"
    );
}

/// A 1 GiB sparse file: reads as zeros without taking disk space.
fn sparse_gib(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("gib");
    std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
    p
}

/// Runs curl for a large transfer, discarding the body; returns curl's `-w` output.
fn curl_big(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "300", "-o", "/dev/null"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn streams_a_gib_up_and_down_with_bounded_memory() {
    let o = Origin::start("o");
    let pop = Pop::start(
        &zone("big", &["big.test"], &[o.addr()], "")
            .replace("read_timeout = \"5s\"", "read_timeout = \"60s\""),
    );
    let gib = sparse_gib(&pop.dir.0);
    let gib = gib.to_str().unwrap();
    // Uploads `gib` with curl -T: from the file (Content-Length) or from stdin (chunked);
    // returns the byte count the origin read.
    let upload = |chunked: bool| -> serde_json::Value {
        let resp_file = pop.dir.0.join("resp");
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-S",
            "--max-time",
            "300",
            "-H",
            "Host: big.test",
            "-o",
        ])
        .arg(&resp_file)
        .args(["-w", "%{http_code}", &pop.url("/upload"), "-T"]);
        if chunked {
            cmd.arg("-").stdin(std::fs::File::open(gib).unwrap());
        } else {
            cmd.arg(gib);
        }
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&resp_file).unwrap()).unwrap();
        body["bytes"].clone()
    };
    assert_eq!(upload(false), 1u64 << 30, "upload with Content-Length");
    assert_eq!(upload(true), 1u64 << 30, "chunked upload");

    // Download.
    let w = curl_big(&[
        "-H",
        "Host: big.test",
        "-w",
        "%{http_code} %{size_download}",
        &pop.url(&format!("/bytes?n={}", 1u64 << 30)),
    ]);
    assert_eq!(w, format!("200 {}", 1u64 << 30));

    // 3 GiB went through; the node's peak resident memory stayed far below one body.
    let peak_mib = pop.peak_rss_kib() / 1024;
    assert!(peak_mib < 128, "peak RSS {peak_mib} MiB");
    eprintln!("peak RSS after 3 GiB streamed: {peak_mib} MiB");
}

#[test]
fn upgrade_hands_the_sockets_to_a_new_process_under_load_without_a_failed_request() {
    let o = Origin::start("o");
    let mut pop = Pop::start(&zone("u", &["u.test"], &[o.addr()], ""));
    let bin = env!("CARGO_BIN_EXE_edgenet");
    let pid_file = pop.dir.0.join("edgenet.pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read_pid(), pop.child.id().to_string());

    // A second node on the same file is refused while this one runs; `--upgrade` where no node
    // runs is refused too, naming the pid file it looked for.
    let twice = Command::new(bin)
        .args(["pop", "--config"])
        .arg(&pop.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(
        !twice.status.success() && said.contains("a node already runs with"),
        "{said}"
    );
    let elsewhere = TempDir::new("upgrade");
    let copy = elsewhere.0.join("edgenet.toml");
    std::fs::copy(&pop.config, &copy).unwrap();
    let alone = Command::new(bin)
        .args(["pop", "--upgrade", "--config"])
        .arg(&copy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(
        !alone.status.success() && said.contains("no running node to take over from"),
        "{said}"
    );
    assert!(
        said.contains(&elsewhere.0.join("edgenet.pid").display().to_string()),
        "{said}"
    );

    // A stray SIGQUIT, with no new process waiting for the sockets, takes nothing away.
    pop.signal("QUIT");
    assert!(
        eventually(Duration::from_secs(10), || pop
            .stderr()
            .contains("no new process waits for the listening sockets")),
        "{}",
        pop.stderr()
    );
    let r = curl(&["-H", "Host: u.test", &pop.url("/echo")]);
    assert_eq!(r.status, 200, "{r:?}");

    // Requests in flight on the old process when it hands over finish there.
    let inflight = in_flight(&pop, "u.test", "/slow?ms=3000", 3);
    assert!(eventually(Duration::from_secs(2), || pop
        .metric("edgenet_inflight_requests")
        == Some(3.0)));
    let stop = Arc::new(AtomicBool::new(false));
    let load = load_like_a_client(pop.http, "u.test", "/echo", 8, stop.clone());
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let mut old = pop.upgrade();
    let status = exit_within(&mut old, started, Duration::from_secs(30), || {
        format!(
            "the old process did not exit after handing over: {}",
            pop.stderr()
        )
    });
    assert!(
        status.success(),
        "old process: exit status {status}: {}",
        pop.stderr()
    );
    for t in inflight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "in-flight request failed: {r:?}");
    }
    // Only the new process is left, and it serves: the load runs on against it.
    assert_eq!(read_pid(), pop.child.id().to_string());
    assert!(pop.child.try_wait().unwrap().is_none(), "{}", pop.stderr());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let report = load.join().unwrap();
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.ok > 100, "load ran: {report:?}");
    eprintln!("load through the upgrade: {report:?}");
    let r = curl(&["-H", "Host: u.test", &pop.url("/echo")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get_status(pop.admin, "/ready"), Some(200));
    let stderr = pop.stderr();
    assert!(stderr.contains("passing the listening sockets"), "{stderr}");
    assert!(stderr.contains("drained"), "{stderr}");
}
