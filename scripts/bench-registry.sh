#!/usr/bin/env bash
# bench-registry.sh -- side-by-side registry benchmark: our notary-registry (--plain-http
# --no-auth, SQLite + filesystem by default) against Debian's docker-registry
# (distribution 2.8, filesystem), both plain HTTP on loopback, measured in the same window
# with the shared anchor script (../shared/anchors/bench.sh, sections blob,small,manifest).
# Prints the ratios (>1 means ours is better, whatever the metric's direction).
#
#   scripts/bench-registry.sh [SECTIONS]        (default: blob,small,manifest)
# Env: ANCHORS (default ../shared/anchors), DURATION (default 10), OUT (default
#      /tmp/notary-rs-bench-registry), PG_URL (also ours on PostgreSQL),
#      S3_URL + S3_BUCKET (also ours on S3-compatible storage, e.g. moto_server).
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHORS="${ANCHORS:-$PWD/../shared/anchors}"
SECTIONS="${1:-blob,small,manifest}"
OUT="${OUT:-/tmp/notary-rs-bench-registry}"
export DURATION="${DURATION:-10}"
command -v docker-registry >/dev/null || { echo "docker-registry missing: apt-get install docker-registry" >&2; exit 2; }
cargo build --release -p notary-registry >&2
BIN="${CARGO_TARGET_DIR:-target}/release/notary-registry"
rm -rf "$OUT"; mkdir -p "$OUT/ours" "$OUT/dist"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_ours() { # DIR [ARGS...]
  local dir=$1; shift
  NOTARY_REGISTRY_LOG_LEVEL=warn "$BIN" --data-dir "$dir/data" --listen 127.0.0.1:0 --plain-http --no-auth "$@" \
    >"$dir/out.log" 2>"$dir/err.log" &
  pids+=($!); OUR_PID=$!
  for _ in $(seq 100); do grep -q listening "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  OUR_ADDR=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$dir/out.log")
}
start_ours "$OUT/ours"
ADDR_OURS=$OUR_ADDR PID_OURS=$OUR_PID

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$OUT/dist/config.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $OUT/dist/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$OUT/dist/config.yml" >"$OUT/dist/out.log" 2>&1 &
pids+=($!); PID_DIST=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

run() { # LABEL ADDR PID
  NOTARY_URL=http://127.0.0.1:9 CA_CERT=/dev/null REGISTRY=$2 SECTIONS=$SECTIONS BENCH_LABEL=$1 \
    BENCH_PIDS="registry=$3" BENCH_OUT="$OUT/res-$1" bash "$ANCHORS/bench.sh" >"$OUT/$1.txt" 2>&1 || true
}
run ours "$ADDR_OURS" "$PID_OURS"
run dist "127.0.0.1:$port" "$PID_DIST"
if [[ -n ${PG_URL:-} ]]; then
  mkdir -p "$OUT/pg"; start_ours "$OUT/pg" --database "$PG_URL"
  run pg "$OUR_ADDR" "$OUR_PID"
fi
if [[ -n ${S3_URL:-} ]]; then
  mkdir -p "$OUT/s3"
  cat >"$OUT/s3/config.json" <<JSON
{"storage":{"kind":"s3","bucket":"${S3_BUCKET:-bench}","endpoint":"$S3_URL","region":"us-east-1",
 "access_key_id":"bench","secret_access_key":"bench","allow_http":true}}
JSON
  start_ours "$OUT/s3" -c "$OUT/s3/config.json"
  run s3 "$OUR_ADDR" "$OUR_PID"
fi
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(label):
    p = os.path.join(out, "res-" + label, "metrics.jsonl")
    if not os.path.exists(p): return {}
    return {m["name"]: m for m in map(json.loads, open(p))}
ours, dist, pg, s3 = load("ours"), load("dist"), load("pg"), load("s3")
print(f"{'metric':44} {'ours':>10} {'distribution':>12} {'ratio':>7} {'ours-pg':>10} {'ours-s3':>10}")
for name, m in ours.items():
    d = dist.get(name, {}).get("value"); o = m["value"]
    if o is None: continue
    r = ""
    if d:
        r = f"{(o / d if m['better'] == 'higher' else d / o if o else 0):.2f}x"
    p = pg.get(name, {}).get("value"); s = s3.get(name, {}).get("value")
    print(f"{name:44} {o:>10} {d if d is not None else '-':>12} {r:>7} {p if p is not None else '-':>10} {s if s is not None else '-':>10}")
PY
