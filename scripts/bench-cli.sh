#!/usr/bin/env bash
# bench-cli.sh -- one `notary add GUN T FILE -p` (stage + publish) with our notary and Go's
# notary 0.7 against the same server (our notary-server on embedded defaults, TLS), in
# the same window, with hyperfine (Debian package `hyperfine`): wall time and client CPU.
#   scripts/bench-cli.sh [RUNS]      (default 40)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-40}"
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install hyperfine" >&2; exit 2; }
command -v notary >/dev/null || { echo "Go notary missing: apt-get install notary" >&2; exit 2; }
cargo build --release -p notary-cli -p notary-server >&2
TD="${CARGO_TARGET_DIR:-target}/release"
W=$(mktemp -d /tmp/notary-rs-bench-cli.XXXXXX)
"$TD/notary-server" --data-dir "$W/srv" --listen 127.0.0.1:0 >"$W/srv.out" 2>"$W/srv.err" &
SP=$!
trap 'kill $SP 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do grep -q listening "$W/srv.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.*listening on \(https:[^ ]*\).*/\1/p' "$W/srv.out")
export NOTARY_ROOT_PASSPHRASE=bench-root NOTARY_TARGETS_PASSPHRASE=bench-targets NOTARY_SNAPSHOT_PASSPHRASE=bench-snapshot
echo payload >"$W/f"
OURS="$TD/notary -s $URL --tlscacert $W/srv/notary-server.crt -d $W/ours"
GO="notary -s $URL --tlscacert $W/srv/notary-server.crt -d $W/go"
$OURS init example.com/bench/ours -p >/dev/null
$GO init example.com/bench/go -p >/dev/null
hyperfine -N --warmup 3 --runs "$RUNS" \
  -n ours "$OURS add example.com/bench/ours t1 $W/f -p" \
  -n go "$GO add example.com/bench/go t1 $W/f -p"
