#!/usr/bin/env bash
# Installs the benchmark peers into benches/.venv (nothing global).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" -c "import duckdb; print('duckdb', duckdb.__version__)"
