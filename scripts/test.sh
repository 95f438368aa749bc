#!/usr/bin/env bash
# The test command from the README: format, lints, then every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The integration tests start the real binary; build it once for every test to share.
cargo build --locked --bin edgenet
# The worker examples, which the integration tests deploy: Rust (wasm32-wasip2) and
# JavaScript (ComponentizeJS, pinned in package-lock.json).
cargo build --locked --release --target wasm32-wasip2 \
  --manifest-path examples/workers/hello-rust/Cargo.toml
(cd examples/workers/hello-js && npm ci --no-audit --no-fund && npm run build)
cargo nextest run --locked --workspace --no-fail-fast
# Every parser of network bytes or operator text, 30 s per target with a fixed seed.
./scripts/fuzz.sh
