#!/usr/bin/env bash
# PostgreSQL benchmark: a database of about 1.1 GB (3 tables, about 6 M rows), backed up
# by lifeboat to a local repository, against `pg_dump -Fc -Z0 > /dev/null` in the same
# run; lifeboat's peak RSS. A benchmark, not a test: it prints figures.
#   bash scripts/bench-postgres.sh     # BENCH_ROWS=2000000 (rows per table)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${BENCH_ROWS:-2000000}
work="$(mktemp -d)"
cleanup() {
  bash scripts/peers/postgres.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -q
bin="$PWD/target/release/lifeboat"
eval "$(bash scripts/peers/postgres.sh start)"
export PGPASSWORD="$LIFEBOAT_TEST_PG_PASSWORD"
url="${LIFEBOAT_TEST_PG_URL%/*}/bench"
psql -q "$LIFEBOAT_TEST_PG_URL" -c "CREATE DATABASE bench"
psql -q "$url" <<SQL
CREATE TABLE users (id bigserial PRIMARY KEY, name text, email text, created_at timestamptz DEFAULT now());
CREATE TABLE tasks (id bigserial PRIMARY KEY, user_id bigint, title text, body text, created_at timestamptz DEFAULT now());
CREATE TABLE poi_records (id bigserial PRIMARY KEY, lat float8, lon float8, label text, created_at timestamptz DEFAULT now());
INSERT INTO users (name, email) SELECT md5(i::text), md5(i::text) || '@example.org' FROM generate_series(1, $rows) i;
INSERT INTO tasks (user_id, title, body) SELECT i % 100000, md5(i::text), repeat(md5(i::text), 4) FROM generate_series(1, $rows) i;
INSERT INTO poi_records (lat, lon, label) SELECT random() * 180 - 90, random() * 360 - 180, md5(i::text) FROM generate_series(1, $rows) i;
VACUUM ANALYZE;
SQL
size=$(psql -At "$url" -c "SELECT pg_size_pretty(pg_database_size('bench'))")

mkdir -p "$work/policies"
cat >"$work/policies/bench.toml" <<TOML
[repositories.local]
url = "file://$work/repo"

[sources.bench]
kind = "postgres"
url = "$url"
password-env = "PGPASSWORD"
ssl-root-cert = "$LIFEBOAT_TEST_PG_CA"
freshness = "SELECT MAX(created_at) FROM tasks"
destinations = ["local"]
TOML

seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.1f}')"
}
conninfo="$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(f'host={p.hostname} port={p.port} user={p.username} dbname=bench')" "$url")"
t_dump=$(seconds sh -c "pg_dump -Fc -Z0 -d '$conninfo' > /dev/null")
t_lifeboat=$(seconds /usr/bin/time -f '%M' -o "$work/rss" "$bin" -q --policies "$work/policies" backup bench)
stored=$(du -sh "$work/repo" | cut -f1)
echo "database: $size, 3 tables x $rows rows"
echo "  pg_dump -Fc -Z0 > /dev/null   ${t_dump}s"
echo "  lifeboat backup (local)       ${t_lifeboat}s  (stored: $stored, zstd), peak RSS $(( $(cat "$work/rss") / 1024 )) MiB"
