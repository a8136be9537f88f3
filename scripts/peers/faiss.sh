#!/usr/bin/env bash
# faiss-cpu and numpy (from PyPI) in the test virtualenv shared with moto, for the FAISS
# engine's tests, which write real index files with tests/fixtures/make_faiss.py.
#   eval "$(bash scripts/peers/faiss.sh)"   # exports LIFEBOAT_TEST_PYTHON
# Header layouts were verified with faiss-cpu 1.15.1 (src/engine/faiss/header.rs).
set -euo pipefail
cache="${LIFEBOAT_PEERS_DIR:-$HOME/.cache/lifeboat-peers}"
venv="$cache/venv"

if ! "$venv/bin/python" -c 'import faiss, numpy' >/dev/null 2>&1; then
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "faiss-cpu>=1.15,<1.16" numpy >&2
fi
printf 'export LIFEBOAT_TEST_PYTHON=%q\n' "$venv/bin/python"
