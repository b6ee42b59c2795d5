#!/usr/bin/env bash
# A venv with JupyterHub for the integration tests; prints its path.
# 6.1.1 is the newest release; 5.5.4 (the line z2jh 4.x ships) is the fallback if 6 cannot be installed.
set -euo pipefail
source "$(dirname "$0")/../lib/pip-venv.sh"
pip_venv jupyterhub "${JUPYTERHUB_VERSION:-6.1.1}" || {
  echo "[hub-setup] jupyterhub ${JUPYTERHUB_VERSION:-6.1.1} failed; falling back to 5.5.4" >&2
  pip_venv jupyterhub 5.5.4
}
