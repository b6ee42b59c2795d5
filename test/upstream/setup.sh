#!/usr/bin/env bash
# A venv with the upstream Python kbatch CLI (PyPI `kbatch`) for the wire-compatibility tests; prints its path.
# 0.5.0b1 is the newest release (a pre-release). The newest stable, 0.4.2, predates the 0.5 API this server
# implements (0.4.2 fetches pod logs from jobs/logs/POD and lists jobs as JSON by default), so the pin is the
# 0.5 pre-release. Override with KBATCH_CLI_VERSION=... to test another one.
set -euo pipefail
source "$(dirname "$0")/../lib/pip-venv.sh"
pip_venv kbatch "${KBATCH_CLI_VERSION:-0.5.0b1}"
