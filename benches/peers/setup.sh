#!/usr/bin/env bash
# Installs the benchmark peers (nothing global):
#   - Python peers pinned in requirements.txt into benches/.venv
#   - Node peers pinned in node/package-lock.json into node/node_modules
# Idempotent: pip runs only when requirements.txt (or the venv's Python)
# changed since the last successful install; npm ci only when the lockfile did.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv"
req="$here/requirements.txt"
node_dir="$here/node"

# ---- Python peers --------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.beacon-requirements.sha256"
want="$({ sha256sum <"$req"; sha256sum <"$here/constraints.txt"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: python peers up to date ($venv)"
else
  echo "setup: installing python peers into $venv"
  rm -f "$stamp"
  # Wheels only: building any of these from source takes a very long time.
  "$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$req" -c "$here/constraints.txt"
  echo "$want" >"$stamp"
fi

# ---- Node peers ----------------------------------------------------------
node_ok=0
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  lock="$node_dir/package-lock.json"
  nstamp="$node_dir/node_modules/.beacon-lock.sha256"
  nwant="$(sha256sum <"$lock" | cut -d' ' -f1)"
  if [ -f "$nstamp" ] && [ "$(cat "$nstamp")" = "$nwant" ]; then
    echo "setup: node peers up to date ($node_dir/node_modules)"
  else
    echo "setup: installing node peers into $node_dir/node_modules"
    npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
    echo "$nwant" >"$nstamp"
  fi
  node_ok=1
else
  echo "setup: node/npm not found on PATH; skipping node peers (ws). Install Node.js >= 18 and re-run." >&2
fi

# ---- Versions ------------------------------------------------------------
echo "peer versions:"
"$py" - <<'EOF'
import importlib
# (label, module) for every pinned peer in requirements.txt
peers = [
    ("duckdb", "duckdb"),
    ("polars", "polars"),
    ("datafusion", "datafusion"),
    ("chdb", "chdb"),
    ("statsforecast", "statsforecast"),
    ("scikit-learn", "sklearn"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("numpy", "numpy"),
]
for label, module in peers:
    m = importlib.import_module(module)
    print(f"  {label:<14} {m.__version__}")
EOF
if [ "$node_ok" = 1 ]; then
  (cd "$node_dir" && node -e "console.log('  ws (node)      ' + require('ws/package.json').version)")
fi
