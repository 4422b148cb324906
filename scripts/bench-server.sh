#!/usr/bin/env bash
# bench-server.sh -- side-by-side load benchmark: our notary-server (SQLite default, local
# trust) against Go notary-server 0.7 (memory backend + local trust, its fastest setup),
# both over TLS with the same certificate, measured in the same window with the shared
# anchor script (../shared/anchors/bench.sh).  Prints both result files and the ratios.
#
#   scripts/bench-server.sh [SECTIONS]        (default: meta,post)
# Env: ANCHORS (default ../shared/anchors), DURATION (default 10), POST_UPDATES (100, as bench.sh),
#      OUT (default /tmp/notary-rs-bench), PG_URL (also benchmark ours on PostgreSQL),
#      SIGNER=1 (also ours with trust_service remote on our notary-signer, both SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHORS="${ANCHORS:-$PWD/../shared/anchors}"
SECTIONS="${1:-meta,post}"
OUT="${OUT:-/tmp/notary-rs-bench}"
export DURATION="${DURATION:-10}" POST_UPDATES="${POST_UPDATES:-100}"
command -v notary-server >/dev/null || { echo "Go notary-server missing: apt-get install notary" >&2; exit 2; }
cargo build --release -p notary-server >&2
BIN="${CARGO_TARGET_DIR:-target}/release/notary-server"
rm -rf "$OUT"; mkdir -p "$OUT/ours" "$OUT/go"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_ours() { # DIR [CONFIG]
  local dir=$1; shift
  "$BIN" --data-dir "$dir" --listen 127.0.0.1:0 "$@" >"$dir/out.log" 2>"$dir/err.log" &
  pids+=($!); OUR_PID=$!
  for _ in $(seq 100); do grep -q listening "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  OUR_URL=$(sed -n 's/.*listening on \(https:[^ ]*\).*/\1/p' "$dir/out.log")
}
start_ours "$OUT/ours"
URL_OURS=$OUR_URL PID_OURS=$OUR_PID
CERT="$OUT/ours/notary-server.crt"

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$OUT/go/server.json" <<JSON
{"server":{"http_addr":"127.0.0.1:$port","tls_cert_file":"$CERT","tls_key_file":"$OUT/ours/notary-server.key"},
 "trust_service":{"type":"local"},"storage":{"backend":"memory"},"logging":{"level":"error"}}
JSON
notary-server -config "$OUT/go/server.json" >"$OUT/go/out.log" 2>&1 &
pids+=($!); PID_GO=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

run() { # LABEL URL PID [CA]
  NOTARY_URL=$2 CA_CERT=${4:-$CERT} REGISTRY=127.0.0.1:9 SECTIONS=$SECTIONS BENCH_LABEL=$1 \
    BENCH_PIDS="notary-server=$3" BENCH_OUT="$OUT/res-$1" bash "$ANCHORS/bench.sh" >"$OUT/$1.txt" 2>&1 || true
}
run ours "$URL_OURS" "$PID_OURS"
run go "https://127.0.0.1:$port" "$PID_GO"
if [[ -n ${PG_URL:-} ]]; then
  mkdir -p "$OUT/pg"
  cat >"$OUT/pg/server.json" <<JSON
{"server":{"http_addr":"127.0.0.1:0","tls_cert_file":"$CERT","tls_key_file":"$OUT/ours/notary-server.key"},
 "trust_service":{"type":"local"},"storage":{"backend":"postgres","db_url":"$PG_URL"}}
JSON
  start_ours "$OUT/pg" -config "$OUT/pg/server.json"
  run pg "$OUR_URL" "$OUR_PID"
fi
if [[ -n ${SIGNER:-} ]]; then
  # Ours on our notary-signer (both SQLite), mutual TLS with the fixture certificates.
  TLS="$PWD/fixtures/go-notary-0.7/tls"
  cargo build --release -p notary-signer --bin notary-signer >&2
  mkdir -p "$OUT/signer" "$OUT/remote"
  cat >"$OUT/signer/signer.json" <<JSON
{"server":{"grpc_addr":"127.0.0.1:0","tls_cert_file":"$TLS/notary-signer.crt","tls_key_file":"$TLS/notary-signer.key","client_ca_file":"$TLS/root-ca.crt"},
 "storage":{"backend":"sqlite3","db_url":"$OUT/signer/signer.db","default_alias":"alias1"},"logging":{"level":"error"}}
JSON
  NOTARY_SIGNER_ALIAS1=bench-pass "${CARGO_TARGET_DIR:-target}/release/notary-signer" -config "$OUT/signer/signer.json" \
    >"$OUT/signer/out.log" 2>"$OUT/signer/err.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$OUT/signer/out.log" 2>/dev/null && break; sleep 0.1; done
  SPORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$OUT/signer/out.log")
  cat >"$OUT/remote/server.json" <<JSON
{"server":{"http_addr":"127.0.0.1:0","tls_cert_file":"$TLS/notary-server.crt","tls_key_file":"$TLS/notary-server.key"},
 "trust_service":{"type":"remote","hostname":"127.0.0.1","port":"$SPORT","key_algorithm":"ecdsa","tls_ca_file":"$TLS/root-ca.crt",
   "tls_client_cert":"$TLS/notary-server.crt","tls_client_key":"$TLS/notary-server.key"},
 "storage":{"backend":"sqlite3","db_url":"$OUT/remote/server.db"},"logging":{"level":"error"}}
JSON
  start_ours "$OUT/remote" -config "$OUT/remote/server.json"
  run remote "$OUR_URL" "$OUR_PID" "$TLS/root-ca.crt"
fi
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(label):
    p = os.path.join(out, "res-" + label, "metrics.jsonl")
    if not os.path.exists(p): return {}
    return {m["name"]: m for m in map(json.loads, open(p)) }
ours, go, pg, remote = load("ours"), load("go"), load("pg"), load("remote")
print(f"{'metric':46} {'ours':>10} {'go-memory':>10} {'ratio':>7} {'ours-pg':>10} {'ours-signer':>11}")
for name, m in ours.items():
    g = go.get(name, {}).get("value"); o = m["value"]; p = pg.get(name, {}).get("value")
    rm = remote.get(name, {}).get("value")
    if o is None: continue
    r = ""
    if g:
        r = f"{(o / g if m['better'] == 'higher' else g / o if o else 0):.2f}x"
    print(f"{name:46} {o:>10} {g if g is not None else '-':>10} {r:>7} {p if p is not None else '-':>10} {rm if rm is not None else '-':>11}")
PY
