#!/usr/bin/env bash
# SSH benchmark: cat, upload, scp and exec latency directly, through an OpenSSH jump host and
# through witness. See bench/ssh/src/main.rs.
#
#   bench/ssh.sh                                 # 256 MiB transfers, 30 execs (~2 min)
#   BENCH_MIB=64 BENCH_EXECS=10 bench/ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/witness-target}"
cargo build --release --locked -p witness -p witness-bench-ssh >/dev/null 2>&1 || cargo build --release --locked -p witness -p witness-bench-ssh
exec "$CARGO_TARGET_DIR/release/witness-bench-ssh" "$@"
