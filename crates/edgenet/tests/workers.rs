//! Workers are compiled in a separate process at deploy time: `edgenet worker-compile` makes
//! the artifact a node then loads (the engines must match), and refuses a bad component with
//! a clear message.

use std::path::Path;

use edgenet_workers::{Limits, Runtime};

#[test]
fn a_component_is_compiled_in_another_process_and_loads_here() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workers/hello-rust");
    let out = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(example.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building hello-rust (needs `rustup target add wasm32-wasip2`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = example.join("target/wasm32-wasip2/release/hello_rust.wasm");
    let cache = std::env::temp_dir().join(format!("edgenet-worker-compile-{}", std::process::id()));
    let rt = Runtime::new(&cache, 8, 32 << 20).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_edgenet"));

    let artifact = rt.compile_elsewhere(exe, &wasm).unwrap();
    assert_eq!(artifact, rt.artifact_path(&std::fs::read(&wasm).unwrap()));
    assert!(artifact.exists());
    rt.load(&artifact, Limits::default())
        .expect("an artifact from the compile process loads in the node's engine");

    let bad = cache.join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let err = rt.compile_elsewhere(exe, &bad).unwrap_err();
    assert_eq!(err.cause(), "bad_component");
    assert!(
        err.to_string()
            .starts_with("is not a usable wasi:http/proxy component: "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
