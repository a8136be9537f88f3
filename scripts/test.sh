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
command -v npm >/dev/null 2>&1 || missing+=(npm) # Azurite comes from the npm registry
# PostgreSQL server and client tools (initdb, pg_ctl, pg_dump, pg_restore).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
if ! command -v redis-server >/dev/null 2>&1; then
  missing+=(redis-server) # the redis engine's tests run real servers; brings redis-tools
elif ! command -v redis-cli >/dev/null 2>&1; then
  missing+=(redis-tools) # redis-cli
fi
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv) # moto lives in a virtualenv
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium) # the HTML report is rendered headless
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -c 'import sqlite3' # the concurrent writer of the consistency test

# --- test peers, on free loopback ports, stopped when this script exits
cleanup() {
  bash scripts/peers/moto.sh stop || true
  bash scripts/peers/azurite.sh stop || true
  bash scripts/peers/postgres.sh stop || true
}
trap cleanup EXIT
eval "$(bash scripts/peers/moto.sh start)"
eval "$(bash scripts/peers/azurite.sh start)"
eval "$(bash scripts/peers/faiss.sh)" # faiss-cpu for the FAISS tests (exports LIFEBOAT_TEST_PYTHON)
eval "$(bash scripts/peers/postgres.sh start)"
# moto accepts any credentials; the secret is distinctive so tests can prove it never leaks.
export AWS_ACCESS_KEY_ID="LBTESTACCESSKEY"
export AWS_SECRET_ACCESS_KEY="lbtest-secret-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
export AWS_REGION="us-east-1"
unset AWS_PROFILE AWS_SESSION_TOKEN

# --- checks
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

# --- tests
# Every AWS operation lifeboat sends during the suite is recorded in one file; once
# the suite has run, the IAM check holds it against
# terraform/modules/lifeboat-iam/operations.txt.
record_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$record_dir"
record="$(cd "$record_dir" && pwd)/aws-operations.txt"
rm -f "$record"
export LIFEBOAT_AWS_RECORD_ALL="$record"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
  cargo nextest run --locked --test terraform --run-ignored only
else
  cargo test --locked --no-fail-fast
  cargo test --locked --test terraform -- --ignored
fi
