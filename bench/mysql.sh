#!/usr/bin/env bash
# MySQL benchmark: sysbench oltp_point_select and oltp_read_only (prepared statements) against
# MariaDB directly, through HAProxy in TCP mode and through witness. Needs sysbench and haproxy
# (Debian: apt-get install sysbench haproxy; installed by the program if missing and run as
# root), and MariaDB's server packages. See bench/mysql/src/main.rs.
#
#   bench/mysql.sh                               # 3 rounds of 10 s runs at 1, 8 and 32 threads (~12 min)
#   BENCH_SECONDS=3 BENCH_ROUNDS=1 BENCH_THREADS=1 bench/mysql.sh
#   BENCH_QUIET_MINUTES=20 bench/mysql.sh        # first wait (up to 20 min) for a quiet machine
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/witness-target}"
cargo build --release --locked -p witness -p witness-bench-mysql >/dev/null 2>&1 || cargo build --release --locked -p witness -p witness-bench-mysql
exec "$CARGO_TARGET_DIR/release/witness-bench-mysql" "$@"
