//! `edgenet up`, the README's main command: it starts a control plane, three PoPs and a demo
//! origin, prints where they are and an API token; a zone created with curl is served by every
//! PoP; Ctrl-C (SIGINT) stops every process it started.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{curl, eventually, TempDir};

#[test]
fn edgenet_up_runs_a_network_and_stops_it() {
    let dir = TempDir::new("up");
    // A base port whose offsets (-70, +11..13, +1001..1003, +2021..2023) are free.
    let port = loop {
        let p = 20_000 + (support::free_port() % 20_000);
        let offsets = [0i32, -70, 11, 12, 13, 1001, 1002, 1003, 2021, 2022, 2023];
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
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("edgenet up ended early:\n{printed}");
        }
        printed.push_str(&line);
    }
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
    for u in &pop_urls {
        let r = curl(&[u.as_str()]);
        assert_eq!(r.status, 200, "{u}");
        assert!(r.body.contains("edgenet demo origin"));
    }
    let control = format!("http://127.0.0.1:{port}");
    let origin = format!("127.0.0.1:{}", port - 70);
    let zone = serde_json::json!({"name": "shop", "hostnames": ["shop.test"],
        "origins": {"servers": [{"address": origin}]}})
    .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        &zone,
        &format!("{control}/v1/zones"),
    ]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(eventually(Duration::from_secs(1), || {
        pop_urls
            .iter()
            .all(|u| curl(&["-H", "Host: shop.test", u.as_str()]).status == 200)
    }));

    // Ctrl-C: everything stops and the ports are free again.
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(eventually(Duration::from_secs(5), || {
        [port, port + 11, port + 1001, port - 70]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
    }));
}
