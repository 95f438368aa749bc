//! `edgenet up`, the README's main command: it starts a control plane, three PoPs and a demo
//! origin, prints where they are and an API token; a zone created with curl is served by every
//! PoP. The first SIGINT or SIGTERM stops every process it started, whether it comes during
//! start-up or after; and if `up` itself is killed, its children die with it.

mod support;

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl, eventually, TempDir};

/// A running `edgenet up` and the lines it printed so far.
struct Up {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    printed: String,
    port: u16,
    _dir: TempDir,
}

impl Up {
    fn start(tag: &str) -> Up {
        let dir = TempDir::new(tag);
        // A base port whose offsets (-70, +11..13, +374..376, +1001..1003, +2021..2023) are free.
        let port = loop {
            let p = 20_000 + (support::free_port() % 20_000);
            let offsets = [
                0i32, -70, 11, 12, 13, 374, 375, 376, 1001, 1002, 1003, 2021, 2022, 2023,
            ];
            if offsets
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", (p as i32 + o) as u16)).is_ok())
            {
                break p;
            }
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgenet"))
            .args(["up", "--port", &port.to_string(), "--data"])
            .arg(dir.0.join("net"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Up {
            child,
            out,
            printed: String::new(),
            port,
            _dir: dir,
        }
    }

    /// Reads what `up` prints until a line contains `text`.
    fn until(&mut self, text: &str) {
        loop {
            match self.out.next() {
                Some(Ok(line)) => {
                    self.printed.push_str(&line);
                    self.printed.push('\n');
                    if line.contains(text) {
                        return;
                    }
                }
                _ => {
                    let _ = self.child.kill();
                    panic!(
                        "edgenet up ended before printing {text:?}:\n{}",
                        self.printed
                    );
                }
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// The processes `up` started, still alive: those whose environment names it as their
    /// parent (what a child of `up` is given to die with it).
    fn children(&self) -> Vec<u32> {
        let marker = format!("EDGENET_UP_PARENT={}", self.child.id());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            // `pid (comm) state ...`: a zombie has exited (its parent has not reaped it yet).
            let alive = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            });
            if alive && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
                found.push(pid);
            }
        }
        found
    }

    /// Sends `sig` and checks that `up` exits 0 within `within` and leaves no child behind.
    fn stops_on(mut self, sig: &str, within: Duration) {
        assert!(!self.children().is_empty(), "children are running");
        self.signal(sig);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < within,
                "edgenet up did not stop within {within:?} of {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{sig}: {status}");
        // Whatever it printed after the signal.
        for line in self.out.by_ref().map_while(Result::ok) {
            self.printed.push_str(&line);
            self.printed.push('\n');
        }
        assert!(
            self.printed.contains(&format!("{sig}: stopping")),
            "{}",
            self.printed
        );
        let left = self.children();
        assert!(left.is_empty(), "left running after {sig}: {left:?}");
        let port = self.port;
        assert!(eventually(Duration::from_secs(5), || {
            [port, port + 11, port + 1001, port - 70]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        }));
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn edgenet_up_runs_a_network_and_stops_on_sigint() {
    let mut up = Up::start("up");
    up.until("Ctrl-C stops everything");
    let printed = &up.printed;
    let token = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("API token"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let pop_urls: Vec<String> = printed
        .lines()
        .filter(|l| l.trim_start().starts_with("pop"))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect();
    assert_eq!(pop_urls.len(), 3, "{printed}");
    let https_ports: Vec<u16> = printed
        .lines()
        .filter(|l| l.trim_start().starts_with("pop"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter_map(|u| {
            u.strip_prefix("https://127.0.0.1:")?
                .trim_end_matches('/')
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(https_ports.len(), 3, "{printed}");
    let ca = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("local CA"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    for u in &pop_urls {
        let r = curl(&[u.as_str()]);
        assert_eq!(r.status, 200, "{u}");
        assert!(r.body.contains("edgenet demo origin"));
    }
    let control = format!("http://127.0.0.1:{}", up.port);
    let origin = format!("127.0.0.1:{}", up.port - 70);
    let zone = serde_json::json!({"name": "shop", "hostnames": ["shop.test"],
        "origins": {"servers": [{"address": origin}]}})
    .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let post = |body: &str, url: &str| curl(&["-X", "POST", "-H", &auth, "-d", body, url]);
    let r = post(&zone, &format!("{control}/v1/zones"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(1), || {
        pop_urls
            .iter()
            .all(|u| curl(&["-H", "Host: shop.test", u.as_str()]).status == 200)
    }));
    // And over HTTPS, with the certificate the control plane's local CA signed for it, as
    // the README's curl line has it.
    for port in &https_ports {
        let resolve = format!("shop.test:{port}:127.0.0.1");
        let url = format!("https://shop.test:{port}/");
        let ok = eventually(Duration::from_secs(5), || {
            curl(&["--cacert", &ca, "--resolve", &resolve, &url]).status == 200
        });
        let r = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
        assert!(ok, "{url}: {} {}", r.status, r.stderr);
        assert!(r.body.contains("edgenet demo origin"), "{}", r.body);
    }
    // A JavaScript worker deployed through the API with one command runs at every PoP.
    let js = support::js_component();
    let r = post(r#"{"name": "js inc"}"#, &format!("{control}/v1/accounts"));
    assert_eq!(r.status, 201, "{}", r.body);
    let account = r.json()["result"]["id"].as_str().unwrap().to_string();
    let zone = serde_json::json!({"name": "js", "hostnames": ["js.test"],
        "origins": {"servers": [{"address": origin}]}})
    .to_string();
    let r = post(&zone, &format!("{control}/v1/accounts/{account}/zones"));
    assert_eq!(r.status, 201, "{}", r.body);
    // Then a Rust component as its next version: every PoP switches to it.
    let rust = support::hello_rust();
    for (component, kind, answer) in [
        (&js, "JavaScript", "hello from js: /x\n"),
        (&rust, "Rust", "hello from wasm: /x\n"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edgenet"))
            .args(["worker", "deploy"])
            .arg(component)
            .args(["--name", "hello", "--route", "js.test/*"])
            .args(["--account", &account, "--control", &control])
            .env("EDGENET_TOKEN", &token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deployed = Instant::now();
        let at = |u: &String| curl(&["-H", "Host: js.test", &format!("{u}x")]).body;
        let served = eventually(Duration::from_secs(120), || {
            pop_urls.iter().all(|u| at(u) == answer)
        });
        assert!(served, "{:?}", pop_urls.iter().map(at).collect::<Vec<_>>());
        println!(
            "the {kind} worker at all 3 PoPs {:?} after the deploy returned",
            deployed.elapsed()
        );
    }
    // The printed network purge: answered once all three PoPs applied it.
    assert!(printed.contains("/v1/zones/demo/purge_cache"), "{printed}");
    let r = post(
        r#"{"purge_everything": true}"#,
        &format!("{control}/v1/zones/demo/purge_cache"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let applied = r.json()["result"]["applied"].as_array().unwrap().len();
    assert_eq!(applied, 3, "{}", r.body);
    assert_eq!(up.children().len(), 5, "control plane, origin, 3 PoPs");
    up.stops_on("INT", Duration::from_secs(15));
}

#[test]
fn sigterm_after_start_stops_everything() {
    let mut up = Up::start("up-term");
    up.until("Ctrl-C stops everything");
    up.stops_on("TERM", Duration::from_secs(15));
}

/// Ctrl-C while the PoPs are starting: `up` does not go on starting, and stops what it had.
#[test]
fn sigint_during_start_up_stops_everything() {
    let mut up = Up::start("up-int-early");
    up.until("starting pop1");
    up.stops_on("INT", Duration::from_secs(15));
}

#[test]
fn sigterm_during_start_up_stops_everything() {
    let mut up = Up::start("up-term-early");
    up.until("starting the demo origin");
    up.stops_on("TERM", Duration::from_secs(15));
}

/// `up` killed outright cannot stop anything itself: its children die with it.
#[test]
fn children_die_with_a_killed_up() {
    let mut up = Up::start("up-kill");
    up.until("Ctrl-C stops everything");
    let children = up.children();
    assert_eq!(children.len(), 5);
    up.signal("KILL");
    let _ = up.child.wait();
    assert!(
        eventually(Duration::from_secs(15), || up.children().is_empty()),
        "left running: {:?}",
        up.children()
    );
}
