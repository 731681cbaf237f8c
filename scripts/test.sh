#!/usr/bin/env bash
# Run the test suite once per Keras backend (torch, jax, tensorflow) and summarise.
# Usage: scripts/test.sh [pytest args...]   Backends: VIDEOSWIN_TEST_BACKENDS="torch jax"
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
backends="${VIDEOSWIN_TEST_BACKENDS:-torch jax tensorflow}"
declare -A status summary
failed=0
for backend in $backends; do
    echo "=== pytest on KERAS_BACKEND=$backend ==="
    log="$(mktemp)"
    KERAS_BACKEND="$backend" "$PY" -m pytest -q "$@" 2>&1 | tee "$log"
    code=${PIPESTATUS[0]}
    summary[$backend]="$(grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)|no tests ran' "$log" | tail -1 | tr -d '=' | xargs)"
    rm -f "$log"
    # Exit 5 means no test was collected: that is a failure here, never a pass.
    if [[ $code -ne 0 ]]; then status[$backend]="FAILED (exit $code)"; failed=1; else status[$backend]="ok"; fi
done
echo
echo "=== summary per backend ==="
for backend in $backends; do
    printf '%-11s %-18s %s\n' "$backend" "${status[$backend]}" "${summary[$backend]}"
done
exit $failed
