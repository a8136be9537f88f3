#!/usr/bin/env bash
# A moto server (S3, RDS, Route53 APIs) on a free loopback port, for the tests.
#   eval "$(bash scripts/peers/moto.sh start)"   # exports LIFEBOAT_TEST_S3_ENDPOINT, LIFEBOAT_TEST_MOTO_PID
#   bash scripts/peers/moto.sh stop
# moto keeps everything in memory: a restart loses all state.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${LIFEBOAT_PEERS_DIR:-$HOME/.cache/lifeboat-peers}"
venv="$cache/venv"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

install() {
  if ! "$venv/bin/python" -c 'import moto, flask' >/dev/null 2>&1; then
    mkdir -p "$cache"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "moto[server]>=5.2,<5.3" >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "${1:-}" in
  start)
    install
    port="$(free_port)"
    log="$cache/moto-$port.log"
    "$venv/bin/python" "$here/moto_server.py" 127.0.0.1 "$port" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
      if python3 -c "import urllib.request,sys; urllib.request.build_opener(urllib.request.ProxyHandler({})).open('http://127.0.0.1:$port/moto-api/', timeout=2)" >/dev/null 2>&1; then
        echo "export LIFEBOAT_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
        echo "export LIFEBOAT_TEST_MOTO_PID=$pid"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 0.2
    done
    echo "moto did not start on port $port; last lines of $log:" >&2
    tail -20 "$log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    if [ -n "${LIFEBOAT_TEST_MOTO_PID:-}" ]; then kill "$LIFEBOAT_TEST_MOTO_PID" 2>/dev/null || true; fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
