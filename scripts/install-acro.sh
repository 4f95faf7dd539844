#!/usr/bin/env bash
# Install the reference SDC implementation (acro) into its own virtualenv, .venv-acro.
# acro pins pandas<=2.3.3 and the project runs pandas 3, so the two cannot share .venv;
# the parity tests and the benchmark reach acro through a subprocess in this venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-acro/bin/python ]; then
    "$PY" -m venv .venv-acro
fi
.venv-acro/bin/pip install --quiet --disable-pip-version-check \
    "acro==1.0.2" "pandas==2.3.3" "pyarrow==26.0.1"
.venv-acro/bin/python -c "import acro, pandas; print('acro', acro.__version__ if hasattr(acro, '__version__') else '1.0.2', 'pandas', pandas.__version__)"
