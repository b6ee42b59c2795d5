#!/usr/bin/env bash
# Creates (or reuses) a venv with JupyterHub for the integration tests, outside the work tree and keyed by
# version so switching versions never mixes installs. Prints the venv path on stdout; logs go to stderr.
# 6.1.1 is the newest release; 5.5.4 (the line z2jh 4.x ships) is the fallback if 6 cannot be installed.
set -euo pipefail
JUPYTERHUB_VERSION="${JUPYTERHUB_VERSION:-6.1.1}"
JUPYTERHUB_FALLBACK_VERSION="5.5.4"
PYTHON="${PYTHON:-python3}"
CACHE="${KBATCH_IT_CACHE:-$HOME/.cache/kbatch-it}"
log() { printf '[hub-setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The marker is written last, so an interrupted install is never mistaken for a warm one. Reading it costs no
# python start (importing jupyterhub just to ask its version takes about a second).
marker() { printf '%s/.kbatch-jupyterhub-version' "$1"; }

install() {
  local version="$1" venv="$CACHE/venv-jupyterhub-$1"
  if [ -x "$venv/bin/jupyterhub" ] && [ "$(cat "$(marker "$venv")" 2>/dev/null)" = "$version" ]; then
    log "jupyterhub $version cached"; echo "$venv"; return; fi
  log "installing jupyterhub $version into $venv"
  rm -rf "$venv"; mkdir -p "$CACHE"
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "jupyterhub==$version" >&2; then
    rm -rf "$venv"; return 1; fi
  local got; got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("jupyterhub"))')"
  [ "$got" = "$version" ] || { log "expected jupyterhub $version, got $got"; rm -rf "$venv"; return 1; }
  echo "$version" > "$(marker "$venv")"
  log "installed jupyterhub $version"
  echo "$venv"
}

install "$JUPYTERHUB_VERSION" || {
  log "jupyterhub $JUPYTERHUB_VERSION failed; falling back to $JUPYTERHUB_FALLBACK_VERSION"
  install "$JUPYTERHUB_FALLBACK_VERSION"
}
