#!/usr/bin/env bash
# PostgreSQL benchmark: pgbench select-only workloads directly, through PgBouncer and through witness
# (durability write and fsync, with a 10-rule policy, and with recordings sealed). See
# bench/pg/src/main.rs.
#
#   bench/pg.sh                                  # 10 s runs at 1, 8 and 32 clients (~5 min)
#   BENCH_SECONDS=3 BENCH_CLIENTS=1,8 bench/pg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/witness-target}"
cargo build --release --locked -p witness -p witness-bench-pg >/dev/null 2>&1 || cargo build --release --locked -p witness -p witness-bench-pg
exec "$CARGO_TARGET_DIR/release/witness-bench-pg" "$@"
