#!/usr/bin/env bash
# Installs what Thrifty needs on a fresh Debian/Ubuntu machine: Debian packages where
# missing (Python venv support, a Redis server when none answers, chromium for the report
# page's browser test), then the virtualenv.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

apt_install() {
    local runner=()
    [ "$(id -u)" -eq 0 ] || runner=(sudo)
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: please install: $*" >&2
        return 1
    fi
    "${runner[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y --no-install-recommends "$@"
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt_install python3 python3-venv python3-dev
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: Thrifty needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V))" >&2
    exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
fi

# Redis: use the machine's if one answers on 6379; otherwise make sure redis-server exists
# so the embedded stack and the tests can start their own.
redis_answers() {
    "$PYTHON" - <<'PY' 2>/dev/null
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 6379), timeout=1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if ! redis_answers && ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
fi
# The webhook TLS test makes a throwaway certificate with the openssl command.
if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl
fi

# The cost report page's browser test drives Debian's chromium with playwright (no browser
# download: playwright is told where this one is).
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: the semantic cache's embedder needs it, and installing it on its own
# resolves the CPU build (sentence-transformers alone would pull the multi-GB CUDA wheels).
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# Export the embedder's ONNX graph now (THRIFTY_HOME/models, keyed by the weights' hash) so the
# first worker does not; a failure here is not fatal: the first worker exports it instead.
"$VENV/bin/python" -m app.embeddings.export >/dev/null \
    || echo "bootstrap: ONNX export failed; the first worker will try again" >&2
echo "bootstrap: ready ($VENV)"
