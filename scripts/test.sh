#!/usr/bin/env bash
# The whole test suite, on a fresh machine: install what the tests need, check
# formatting and lints, run every test. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Test peers listen on loopback; never send that traffic through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# --- what the tests need beyond the Rust toolchain
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -c 'import sqlite3' # the concurrent writer of the consistency test

# --- checks
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

# --- tests
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
