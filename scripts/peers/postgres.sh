#!/usr/bin/env bash
# A throwaway PostgreSQL cluster (initdb) on a free loopback port, for the tests, with
# password (SCRAM) authentication so the tests exercise real password handling.
#   eval "$(bash scripts/peers/postgres.sh start)"  # exports LIFEBOAT_TEST_PG_URL, _PASSWORD, _CA, _DIR
#   bash scripts/peers/postgres.sh stop
# initdb refuses to run as root, so the cluster runs as the `postgres` system user
# (created by Debian's postgresql package), or as `nobody`-like user we create.
set -euo pipefail

bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$bindir" ] || { echo "no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }

run_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$pguser" -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    pguser=postgres
    if [ "$(id -u)" = 0 ] && ! id "$pguser" >/dev/null 2>&1; then
      pguser=lifeboat-pg
      id "$pguser" >/dev/null 2>&1 || useradd --system --no-create-home "$pguser"
    fi
    [ "$(id -u)" = 0 ] || pguser="$(id -un)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    dir="$(mktemp -d /tmp/lifeboat-pg.XXXXXX)"
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    printf '%s\n' "$password" >"$dir/pw"
    chown -R "$pguser" "$dir" 2>/dev/null || true
    chmod 700 "$dir"
    if ! run_as "$bindir/initdb" -D "$dir/data" -U lifeboat --auth=scram-sha-256 \
      --pwfile="$dir/pw" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
      echo "initdb failed:" >&2; tail -20 "$dir/initdb.log" >&2; exit 1
    fi
    rm -f "$dir/pw"
    # TLS with a throwaway CA, so clients exercise certificate verification.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=lifeboat test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.crt" >/dev/null 2>&1
    chown "$pguser" "$dir"/server.* "$dir"/ca.* 2>/dev/null || true
    chmod 600 "$dir/server.key"
    chmod 644 "$dir/ca.crt"
    if ! run_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" \
      start >/dev/null 2>&1; then
      echo "postgres did not start on port $port:" >&2; tail -20 "$dir/server.log" >&2; exit 1
    fi
    echo "export LIFEBOAT_TEST_PG_URL=postgres://lifeboat@127.0.0.1:$port/postgres"
    echo "export LIFEBOAT_TEST_PG_PASSWORD=$password"
    echo "export LIFEBOAT_TEST_PG_DIR=$dir"
    echo "export LIFEBOAT_TEST_PG_USER=$pguser"
    echo "export LIFEBOAT_TEST_PG_CA=$dir/ca.crt"
    ;;
  stop)
    if [ -n "${LIFEBOAT_TEST_PG_DIR:-}" ] && [ -d "$LIFEBOAT_TEST_PG_DIR/data" ]; then
      pguser="${LIFEBOAT_TEST_PG_USER:-postgres}"
      run_as "$bindir/pg_ctl" -D "$LIFEBOAT_TEST_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
      rm -rf "$LIFEBOAT_TEST_PG_DIR"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
