# Sourced by the test setup scripts: a venv per PyPI package and version, outside the work tree, so
# switching versions never mixes installs. `pip_venv PACKAGE VERSION` prints the venv path on stdout
# (logs go to stderr) and is fast when warm: a marker written last says the install completed, and
# reading it costs no Python start. Extra requirements after the version (`pip_venv kbatch-proxy 0.5.0b1
# 'kubernetes==35.0.0' uvicorn`) are installed alongside and are part of the venv's identity.
CACHE="${KBATCH_IT_CACHE:-$HOME/.cache/kbatch-it}"
PYTHON="${PYTHON:-python3}"

pip_venv() {
  local package="$1" version="$2"; shift 2
  local extras=("$@") suffix=""
  [ "${#extras[@]}" -eq 0 ] || suffix="-$(printf '%s ' "${extras[@]}" | sha256sum | cut -c1-8)"
  local venv="$CACHE/venv-$package-$version$suffix"
  local marker="$venv/.kbatch-venv-version" identity="$package==$version${extras[*]:+ ${extras[*]}}"
  log() { printf '[%s-setup %s] %s\n' "$package" "$(date +%H:%M:%S)" "$*" >&2; }
  warm() { [ "$(cat "$marker" 2>/dev/null)" = "$identity" ]; }
  if warm; then log "$package $version cached"; echo "$venv"; return 0; fi
  # Several test runs may start at once: one installs, the others wait for it and then find it warm.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.venv-$package-$version$suffix.lock"
  flock 9
  if warm; then log "$package $version cached"; echo "$venv"; return 0; fi
  log "installing $package $version into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv" >&2 || { rm -rf "$venv"; log "creating the venv failed"; return 1; }
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" "${extras[@]}" >&2; then
    rm -rf "$venv"; log "pip install $package==$version failed"; return 1; fi
  local got; got="$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$package'))")"
  [ "$got" = "$version" ] || { log "expected $package $version, got $got"; rm -rf "$venv"; return 1; }
  echo "$identity" > "$marker"
  log "installed $package $version"
  echo "$venv"
}
