//! Worker routes: the most specific match wins (an exact host over a wildcard over any host,
//! then the longer path, then an exact path over a prefix), whatever the file order.

use edgenet_config::{parse_toml, validate};

#[test]
fn the_most_specific_route_wins() {
    let dir = std::env::temp_dir().join(format!("edgenet-worker-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("w.wasm"), b"\0asm").unwrap();
    let worker = |name: &str, routes: &str| {
        format!(
            "[[zones.workers]]\nname = \"{name}\"\ncomponent = \"w.wasm\"\nroutes = [{routes}]\n"
        )
    };
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:8080\"\nprotocol = \"http\"\n\
         [[zones]]\nname = \"a\"\nhostnames = [\"a.test\", \"*.a.test\"]\n\
         [[zones.origins.servers]]\naddress = \"127.0.0.1:8000\"\n{}{}{}{}{}",
        worker("any", "\"/*\""),
        worker("api", "\"/api/*\""),
        worker("exact-host-api", "\"a.test/api/*\""),
        worker("wild-api", "\"*.a.test/api/*\""),
        worker("exact", "\"a.test/api/v1\", \"/api/v1/*\""),
    );
    let raw = parse_toml(&text, "test").unwrap();
    let config = validate(&raw, &dir, &edgenet_config::System).unwrap();
    let zone = &config.zones[0];
    let name = |host: &str, path: &str| {
        zone.worker_for(host, path)
            .map(|i| zone.workers[i].name.as_str())
    };
    assert_eq!(name("a.test", "/api/v1"), Some("exact"));
    assert_eq!(name("a.test", "/api/v1/x"), Some("exact-host-api"));
    assert_eq!(name("a.test", "/api/v2"), Some("exact-host-api"));
    assert_eq!(name("x.a.test", "/api/v2"), Some("wild-api"));
    assert_eq!(name("x.a.test", "/api/v1/y"), Some("wild-api"));
    assert_eq!(name("x.a.test", "/apix"), Some("any"));
    assert_eq!(name("a.test", "/"), Some("any"));
    // Any host: "/api/*" wins over "/*" for a name no host-specific route covers.
    let zone_routes = &zone.worker_routes;
    let api = zone_routes
        .iter()
        .find(|r| r.host.is_none() && r.path == "/api/")
        .unwrap();
    assert!(api.matches("y.a.test", "/api/z"));
    // A wildcard needs one more label than its suffix.
    let wild = zone_routes
        .iter()
        .find(|r| r.host.is_some() && r.path == "/api/" && r.worker == 3)
        .unwrap();
    assert!(!wild.matches("a.test", "/api/z"));
    let _ = std::fs::remove_dir_all(&dir);
}
