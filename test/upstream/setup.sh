#!/usr/bin/env bash
# A venv with the upstream Python kbatch CLI (PyPI `kbatch`) for the wire-compatibility tests; prints its path.
# 0.5.0b1 is the newest release (a pre-release) and the default: it speaks the 0.5 API this server implements.
# 0.4.2, the newest stable release, is what most people have installed; pass it as the argument
# (`setup.sh 0.4.2`) for its own venv: it fetches pod logs from jobs/logs/POD, which the server also answers.
# KBATCH_CLI_VERSION=... overrides the default version.
set -euo pipefail
source "$(dirname "$0")/../lib/pip-venv.sh"
pip_venv kbatch "${1:-${KBATCH_CLI_VERSION:-0.5.0b1}}"
