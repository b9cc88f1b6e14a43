#!/usr/bin/env bash
# HTTP benchmark: wrk against nginx directly, through nginx as a reverse proxy and through witness.
# Needs wrk and nginx (Debian: apt-get install wrk nginx; installed by the program if missing and
# run as root). See bench/http/src/main.rs.
#
#   bench/http.sh                                # 3 rounds of 8 s runs at 1 and 32 connections (~7 min)
#   BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_CONNECTIONS=1 bench/http.sh
#   BENCH_QUIET_MINUTES=20 bench/http.sh         # first wait (up to 20 min) for a quiet machine
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/witness-target}"
cargo build --release --locked -p witness -p witness-bench-http >/dev/null 2>&1 || cargo build --release --locked -p witness -p witness-bench-http
exec "$CARGO_TARGET_DIR/release/witness-bench-http" "$@"
