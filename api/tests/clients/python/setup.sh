#!/usr/bin/env bash
# Creates api/tests/clients/python/.venv with the pinned analyst clients
# (psycopg, ADBC Flight SQL, pyarrow) and the notification receivers
# (aiosmtpd, standardwebhooks) and an XLSX reader (openpyxl) unless it is
# already complete.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/python ] && .venv/bin/python -c "import psycopg, adbc_driver_flightsql, pyarrow, aiosmtpd, standardwebhooks, openpyxl" 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
