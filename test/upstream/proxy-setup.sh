#!/usr/bin/env bash
# A venv with upstream's kbatch-proxy (PyPI) for the side-by-side bench (bench/run.ts); prints its path.
# 0.5.0b1 is the newest release (a pre-release). kbatch-proxy does not pin `kubernetes`, and with the
# current client (36.x and later) every submit is a 500 inside its model parser, so the pin is the newest
# client it works with. `rich` is imported by 0.4.2 without being declared; uvicorn serves the app.
set -euo pipefail
source "$(dirname "$0")/../lib/pip-venv.sh"
pip_venv kbatch-proxy "${KBATCH_PROXY_VERSION:-0.5.0b1}" 'kubernetes==35.0.0' rich 'uvicorn==0.54.0'
