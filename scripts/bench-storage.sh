#!/usr/bin/env bash
# Storage benchmark: stream 1 GiB of incompressible data to S3 (a local moto server)
# with lifeboat, and in the same run: hash the same bytes (sha256sum), and upload them
# with the aws CLI (`aws s3 cp -`). Then peak RSS of lifeboat at 256 MiB and at 2 GiB,
# which must be about equal (memory does not grow with the backup).
#   bash scripts/bench-storage.sh            # sizes in MiB: BENCH_MIB=1024 SMALL_MIB=256 LARGE_MIB=2048
# A benchmark, not a test: it prints figures, it asserts nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/.."
big=${BENCH_MIB:-1024}
small=${SMALL_MIB:-256}
large=${LARGE_MIB:-2048}
cache="${LIFEBOAT_PEERS_DIR:-$HOME/.cache/lifeboat-peers}"
work="$(mktemp -d)"
cleanup() {
  bash scripts/peers/moto.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -q
bin="$PWD/target/release/lifeboat"
eval "$(bash scripts/peers/moto.sh start)"
"$cache/venv/bin/python" -c 'import awscli' 2>/dev/null || "$cache/venv/bin/pip" install -q awscli
aws="$cache/venv/bin/aws --endpoint-url $LIFEBOAT_TEST_S3_ENDPOINT"
$aws s3 mb s3://bench >/dev/null

mkdir -p "$work/policies"
cat >"$work/policies/bench.toml" <<TOML
[repositories.s3]
url = "s3://bench/lifeboat"
region = "us-east-1"
endpoint = "$LIFEBOAT_TEST_S3_ENDPOINT"
path-style = true

[sources.blob]
kind = "file"
path = "$work/input"
destinations = ["s3"]
TOML

make_input() { # MiB of incompressible bytes
  head -c "$(( $1 * 1024 * 1024 ))" /dev/urandom >"$work/input"
}

seconds() { # run a command, print its wall time in seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

rss_of_backup() { # peak RSS in MiB of one lifeboat backup
  /usr/bin/time -f '%M' -o "$work/rss" "$bin" -q --policies "$work/policies" \
    --catalog "$work/catalog.db" backup blob >/dev/null
  echo $(( $(cat "$work/rss") / 1024 ))
}

make_input "$big"
mib_s() { python3 -c "print(f'{$big / $1:.0f}')"; }
t_hash=$(seconds sha256sum "$work/input")
t_lifeboat=$(seconds "$bin" -q --policies "$work/policies" --catalog "$work/catalog.db" backup blob)
t_aws=$(seconds sh -c "cat '$work/input' | $aws s3 cp - s3://bench/aws-cli/input")
echo "streamed ${big} MiB to S3 (moto on loopback):"
echo "  sha256sum of the bytes      ${t_hash}s  ($(mib_s "$t_hash") MiB/s)"
echo "  lifeboat backup             ${t_lifeboat}s  ($(mib_s "$t_lifeboat") MiB/s)  (read, sha256 x2, zstd, multipart with checksums)"
echo "  aws s3 cp -                 ${t_aws}s  ($(mib_s "$t_aws") MiB/s)"

make_input "$small"
rss_small=$(rss_of_backup)
make_input "$large"
rss_large=$(rss_of_backup)
echo "peak RSS of lifeboat backup:"
echo "  ${small} MiB source          ${rss_small} MiB"
echo "  ${large} MiB source          ${rss_large} MiB"
