#!/usr/bin/env bash
# Install videoswin with every backend, the converter, and (with --test) the test oracle,
# into the active Python environment (create one first: python3 -m venv .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
extras="all"
# --test: also the export runtimes (the tests prove every export in them) and Ray (the tests
# run the evaluation on a local Ray too).
[[ "${1:-}" == "--test" ]] && extras="all,export,ray,test"
# pyproject.toml asks for torch>=2.4 (so that a user's own CUDA build is kept); here the
# exact CPU build is installed first, and the extras below then leave it in place.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[${extras}]"
if [[ "${1:-}" == "--test" ]]; then
    # mmaction2 declares decord, which has no build for this platform: install it without
    # dependencies; its SwinTransformer3D needs only what the `test` extra brings.
    "$PY" -m pip install -q --no-deps -r requirements/oracle.txt
fi
