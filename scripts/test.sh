#!/usr/bin/env bash
# The project's test command (README.md). Installs what the suite needs on a fresh
# Debian machine, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v notary >/dev/null 2>&1 || need_pkgs+=(notary)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need_pkgs[@]}"
fi

# Builds are kept outside the clone so repeated runs are fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/notary-rs/target}"
export CARGO_TERM_COLOR=never

cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2
