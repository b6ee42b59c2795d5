#!/usr/bin/env bash
# Creates (or reuses) a venv with the upstream Python kbatch CLI (PyPI `kbatch`) for the wire-compatibility
# tests, outside the work tree and keyed by version so switching versions never mixes installs. Prints the
# venv path on stdout; logs go to stderr.
# 0.5.0b1 is the newest release (a pre-release). The newest stable, 0.4.2, predates the 0.5 API this server
# implements (0.4.2 fetches pod logs from jobs/logs/POD and lists jobs as JSON by default), so the pin is the
# 0.5 pre-release. Override with KBATCH_CLI_VERSION=... to test another one.
set -euo pipefail
KBATCH_CLI_VERSION="${KBATCH_CLI_VERSION:-0.5.0b1}"
PYTHON="${PYTHON:-python3}"
CACHE="${KBATCH_IT_CACHE:-$HOME/.cache/kbatch-it}"
VENV="$CACHE/venv-kbatch-$KBATCH_CLI_VERSION"
log() { printf '[kbatch-cli-setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The marker is written last, so an interrupted install is never mistaken for a warm one. Reading it costs no
# python start.
MARKER="$VENV/.kbatch-cli-version"
if [ -x "$VENV/bin/kbatch" ] && [ "$(cat "$MARKER" 2>/dev/null)" = "$KBATCH_CLI_VERSION" ]; then
  log "kbatch $KBATCH_CLI_VERSION cached"; echo "$VENV"; exit 0; fi

# Several test runs may start at once: one installs, the others wait for it and then find it warm.
mkdir -p "$CACHE"
exec 9>"$CACHE/.venv-kbatch-$KBATCH_CLI_VERSION.lock"
flock 9
if [ -x "$VENV/bin/kbatch" ] && [ "$(cat "$MARKER" 2>/dev/null)" = "$KBATCH_CLI_VERSION" ]; then
  log "kbatch $KBATCH_CLI_VERSION cached"; echo "$VENV"; exit 0; fi

log "installing kbatch $KBATCH_CLI_VERSION into $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2 || { rm -rf "$VENV"; log "creating the venv failed"; exit 1; }
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kbatch==$KBATCH_CLI_VERSION" >&2; then
  rm -rf "$VENV"; log "pip install kbatch==$KBATCH_CLI_VERSION failed"; exit 1; fi
got="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kbatch"))')"
[ "$got" = "$KBATCH_CLI_VERSION" ] || { log "expected kbatch $KBATCH_CLI_VERSION, got $got"; rm -rf "$VENV"; exit 1; }
echo "$KBATCH_CLI_VERSION" > "$MARKER"
log "installed kbatch $KBATCH_CLI_VERSION"
echo "$VENV"
