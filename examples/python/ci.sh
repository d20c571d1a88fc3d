#!/usr/bin/env bash
# Run the Python example client against a throwaway dev gateway.
#
#   cargo build                  # once: the debug binary target/debug/wagelink
#   examples/python/ci.sh        # WAGELINK_BIN=/path/to/wagelink overrides the binary
#
# Installs requirements.txt into a venv under a temporary directory, starts
# `wagelink dev` on a free port with a fresh data directory, runs submit_lead.py as the lead
# source partner `source-national-platform`, stops the gateway and exits with the client's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${WAGELINK_BIN:-$REPO/target/debug/wagelink}"
PARTNER="source-national-platform"

if [[ ! -x "$BIN" ]]; then
  echo "ci.sh: $BIN is not an executable; run 'cargo build' in $REPO first, or set WAGELINK_BIN" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wagelink-python.XXXXXX")"
GW_PID=""
cleanup() {
  if [[ -n "$GW_PID" ]] && kill -0 "$GW_PID" 2>/dev/null; then
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Python dependencies: a venv if possible, else the user site.
echo "== installing $HERE/requirements.txt"
if python3 -m venv "$WORK/venv" >/dev/null 2>&1 && "$WORK/venv/bin/python" -m pip --version >/dev/null 2>&1; then
  PY="$WORK/venv/bin/python"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
else
  echo "python3 -m venv is not available; installing with pip install --user"
  PY="python3"
  "$PY" -m pip install --quiet --disable-pip-version-check --user -r "$HERE/requirements.txt"
fi

# The gateway, on a free port, with a fresh data directory (dev PKI and roster made on start).
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
DATA="$WORK/data"
echo "== starting $BIN dev --data-dir $DATA --listen 127.0.0.1:$PORT"
"$BIN" dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!

ready=""
deadline=$((SECONDS + 30))
while (( SECONDS < deadline )); do
  if ! kill -0 "$GW_PID" 2>/dev/null; then
    echo "ci.sh: the gateway exited during start-up; its log:" >&2
    cat "$WORK/gateway.log" >&2
    exit 1
  fi
  if "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$PORT" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
if [[ -z "$ready" ]]; then
  echo "ci.sh: 127.0.0.1:$PORT did not accept TCP within 30 s; the gateway's log:" >&2
  cat "$WORK/gateway.log" >&2
  exit 1
fi
echo "== gateway listening on 127.0.0.1:$PORT (pid $GW_PID)"

echo "== submit_lead.py as $PARTNER"
status=0
"$PY" "$HERE/submit_lead.py" \
  --gateway "127.0.0.1:$PORT" \
  --partner-dir "$DATA/partners/$PARTNER" \
  --proto-dir "$REPO/proto" || status=$?

if [[ $status -ne 0 ]]; then
  echo "== the client failed (status $status); the gateway's log:" >&2
  tail -n 50 "$WORK/gateway.log" >&2
fi
exit "$status"
