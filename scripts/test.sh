#!/usr/bin/env bash
# The project's test command (README.md). Installs what the suite needs on a fresh
# Debian machine, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v notary >/dev/null 2>&1 || need_pkgs+=(notary)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
# dockerd for the docker content-trust tests (the machine's docker 28 CLI stays first in PATH).
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v tar >/dev/null 2>&1 || need_pkgs+=(tar)
command -v skopeo >/dev/null 2>&1 || need_pkgs+=(skopeo)
command -v gzip >/dev/null 2>&1 || need_pkgs+=(gzip)
command -v moto_server >/dev/null 2>&1 || [ -x "$HOME/.cache/notary-rs/moto-venv/bin/moto_server" ] || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need_pkgs[@]}"
fi

# moto's S3 server (PyPI's moto[server]) for the registry's S3 and HA tests, in a venv
# of its own when it is not on PATH already.
moto_venv="$HOME/.cache/notary-rs/moto-venv"
if ! command -v moto_server >/dev/null 2>&1; then
  if [ ! -x "$moto_venv/bin/moto_server" ]; then
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet 'moto[server]'
  fi
  export PATH="$moto_venv/bin:$PATH"
fi

# Builds are kept outside the clone so repeated runs are fast, one directory per clone
# path: test binaries embed their checkout's path (fixtures, CARGO_MANIFEST_DIR), so two
# clones must never share artifacts.
clone_key="$(pwd | sha256sum | cut -c1-12)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/notary-rs/target-$clone_key}"
export CARGO_TERM_COLOR=never

cargo build --workspace --all-targets --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite.
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo "${passed} passed, ${failed} failed"
exit "$status"
