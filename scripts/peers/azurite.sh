#!/usr/bin/env bash
# Azurite (the Azure Storage emulator, blob service only) on a free loopback port, for
# the tests.
#   eval "$(bash scripts/peers/azurite.sh start)"  # exports LIFEBOAT_TEST_AZURE_ENDPOINT, LIFEBOAT_TEST_AZURE_PID
#   bash scripts/peers/azurite.sh stop
# Azurite keeps everything in memory here: a restart loses all state. Its account is the
# public emulator account devstoreaccount1 and its well-known key (in the tests).
set -euo pipefail
cache="${LIFEBOAT_PEERS_DIR:-$HOME/.cache/lifeboat-peers}"
dir="$cache/azurite"
bin="$dir/node_modules/.bin/azurite-blob"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

install() {
  if [ ! -x "$bin" ]; then
    command -v npm >/dev/null 2>&1 || {
      echo "azurite needs node and npm (apt-get install nodejs npm)" >&2
      exit 1
    }
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@3.35.0" >&2
  fi
  # Refuse an install that lacks a flag the tests rely on, rather than fail obscurely.
  local help
  help="$("$bin" --help 2>&1)"
  for flag in --inMemoryPersistence --loose --skipApiVersionCheck --disableTelemetry; do
    case "$help" in
      *"$flag"*) ;;
      *)
        echo "azurite in $dir has no $flag; remove that folder to reinstall" >&2
        exit 1
        ;;
    esac
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "${1:-}" in
  start)
    install
    port="$(free_port)"
    log="$cache/azurite-$port.log"
    # --skipApiVersionCheck: the SDK speaks a newer API version than Azurite knows.
    # --loose: accept headers Azurite does not implement instead of refusing the request.
    # Started from its own folder: nothing it might write lands in the caller's.
    (cd "$dir" && exec "$bin" --inMemoryPersistence --blobHost 127.0.0.1 --blobPort "$port" \
      --loose --skipApiVersionCheck --disableTelemetry) >"$log" 2>&1 &
    pid=$!
    # Any HTTP answer (even 400 for a bare GET) means the server is up.
    for _ in $(seq 1 150); do
      if python3 - "$port" >/dev/null 2>&1 <<'EOF'; then
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(f"http://127.0.0.1:{sys.argv[1]}/devstoreaccount1?comp=list", timeout=2)
except urllib.error.HTTPError:
    pass
EOF
        echo "export LIFEBOAT_TEST_AZURE_ENDPOINT=http://127.0.0.1:$port/devstoreaccount1"
        echo "export LIFEBOAT_TEST_AZURE_PID=$pid"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 0.2
    done
    echo "azurite did not start on port $port within 30s; last lines of $log:" >&2
    tail -20 "$log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    pid="${LIFEBOAT_TEST_AZURE_PID:-}"
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      # Azurite closes its servers before exiting; give it 5s, then insist.
      for _ in $(seq 1 25); do
        kill -0 "$pid" 2>/dev/null || exit 0
        sleep 0.2
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
