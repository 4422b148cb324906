#!/usr/bin/env bash
# bench-signer.sh -- Sign RPCs per second, our notary-signer vs Go notary-signer 0.7, same
# machine, same window, same load generator (notary-signer/examples/sign_load.rs), ECDSA
# P-256 keys, mutual TLS with the fixture certificates. Also `openssl speed ecdsap256`
# (the raw signing limit) and each signer's peak RSS (VmHWM).
#
#   scripts/bench-signer.sh            memory backends (Go: memory; ours: memory)
#   PG=1 scripts/bench-signer.sh       also both on PostgreSQL (a private cluster in /tmp)
# Env: SECONDS_PER_RUN (default 8), OUT (default /tmp/notary-rs-bench-signer).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T="${SECONDS_PER_RUN:-8}"
OUT="${OUT:-/tmp/notary-rs-bench-signer}"
TLS="$ROOT/fixtures/go-notary-0.7/tls"
command -v notary-signer >/dev/null || { echo "Go notary-signer missing: apt-get install notary" >&2; exit 2; }
cargo build --release -p notary-signer --bin notary-signer --example sign_load >&2
TD="${CARGO_TARGET_DIR:-target}/release"
rm -rf "$OUT"; mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
export NOTARY_SIGNER_ALIAS1=bench-pass

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
config() { # NAME PORT BACKEND DBURL
  cat >"$OUT/$1.json" <<JSON
{"server":{"grpc_addr":"127.0.0.1:$2","tls_cert_file":"$TLS/notary-signer.crt","tls_key_file":"$TLS/notary-signer.key","client_ca_file":"$TLS/root-ca.crt"},
 "storage":{"backend":"$3","db_url":"$4","default_alias":"alias1"},"logging":{"level":"error"}}
JSON
}
start() { # NAME BIN BACKEND DBURL -> sets PORT PID
  PORT=$(free_port); config "$1" "$PORT" "$3" "$4"
  "$2" -config "$OUT/$1.json" >"$OUT/$1.out" 2>"$OUT/$1.err" & PID=$!; pids+=($PID)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.1; done
  echo "$1 did not start: $(cat "$OUT/$1.err")" >&2; exit 1
}
load() { # PORT CONNS INFLIGHT
  "$TD/examples/sign_load" --addr "127.0.0.1:$1" --ca "$TLS/root-ca.crt" --cert "$TLS/notary-server.crt" \
    --key "$TLS/notary-server.key" --connections "$2" --inflight "$3" --seconds "$T" | python3 -c 'import json,sys;print(json.load(sys.stdin)["rate"])'
}
hwm() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
run_pair() { # LABEL BACKEND OURS_DB GO_DB
  start "ours-$1" "$TD/notary-signer" "$2" "$3"; OP=$PORT; OPID=$PID
  start "go-$1" notary-signer "$2" "$4"; GP=$PORT; GPID=$PID
  for shape in "1 1" "1 16" "8 4"; do
    set -- $shape
    o=$(load "$OP" "$1" "$2"); g=$(load "$GP" "$1" "$2")
    printf '%-10s conns=%s inflight=%-3s ours %9.0f/s  go %8.0f/s  ratio %5.2fx\n' "$LABEL" "$1" "$2" "$o" "$g" "$(python3 -c "print($o/$g)")"
  done
  printf '%-10s peak RSS   ours %6s kB  go %6s kB\n' "$LABEL" "$(hwm $OPID)" "$(hwm $GPID)"
  kill "$OPID" "$GPID"
}
echo "openssl speed ecdsap256 (sign/s, one core): $(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/{print $7}')"
LABEL=memory run_pair memory memory "" ""
if [[ -n ${PG:-} ]]; then
  PGB=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
  PGD="$OUT/pg"; mkdir -p "$PGD"; chown postgres "$PGD" 2>/dev/null || true
  as_pg() { if [[ $EUID == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
  as_pg "$PGB/initdb" -D "$PGD/data" -A trust -U notary >/dev/null
  PGP=$(free_port)
  as_pg "$PGB/pg_ctl" -D "$PGD/data" -o "-p $PGP -k $PGD/data -c listen_addresses=127.0.0.1" -l "$PGD/log" start >/dev/null
  trap 'cleanup; as_pg "$PGB/pg_ctl" -D "$PGD/data" stop -m fast >/dev/null' EXIT
  for db in ours theirs; do as_pg "$PGB/createdb" -h 127.0.0.1 -p "$PGP" -U notary "$db"; done
  # Go's signer does not create its table: our signer's migration (Go's exact schema) does.
  start init "$TD/notary-signer" postgres "postgres://notary@127.0.0.1:$PGP/theirs?sslmode=disable"; kill "$PID"
  LABEL=postgres run_pair postgres postgres "postgres://notary@127.0.0.1:$PGP/ours?sslmode=disable" \
    "postgres://notary@127.0.0.1:$PGP/theirs?sslmode=disable"
fi
