#!/usr/bin/env bash
# A venv with papermill and a Python kernel (PyPI) for the notebook tests on the local backend, which
# runs a job's command as a local process: the tests put this venv's bin first on the job's PATH.
# Prints the venv path. KBATCH_PAPERMILL_VERSION=... overrides the version (2.7.0 is the newest release).
set -euo pipefail
source "$(dirname "$0")/../lib/pip-venv.sh"
pip_venv papermill "${KBATCH_PAPERMILL_VERSION:-2.7.0}" 'ipykernel==7.4.0'
