#!/usr/bin/env bash
# Run the test suite once per Keras backend (torch, jax, tensorflow) and summarise.
# Usage: scripts/test.sh [pytest args...]
#   Backends: VIDEOSWIN_TEST_BACKENDS="torch jax"   (default: jax torch tensorflow)
#   Passes at once: VIDEOSWIN_TEST_JOBS=1           (default 2)
# Most tests are single-threaded (small tensors, XLA compilations), so two backend passes
# side by side use both cores of a small machine; each line of output says its backend, and
# each pass ends with its slowest tests. The longest pass (jax) starts first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
backends="${VIDEOSWIN_TEST_BACKENDS:-jax torch tensorflow}"
jobs="${VIDEOSWIN_TEST_JOBS:-2}"
logs="$(mktemp -d "${TMPDIR:-/tmp}/videoswin-tests.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
start=$SECONDS

run_pass() {
    local backend=$1; shift
    local began=$SECONDS
    echo "[$backend] === pytest on KERAS_BACKEND=$backend ==="
    : > "$logs/$backend.log"        # exists before tail follows it
    KERAS_BACKEND="$backend" PYTHONUNBUFFERED=1 "$PY" -m pytest -v --durations=15 -p no:cacheprovider "$@" \
        > "$logs/$backend.log" 2>&1 &
    local pid=$!
    tail -n +1 --pid="$pid" -f "$logs/$backend.log" 2>/dev/null | sed -u "s/^/[$backend] /" &
    local tailer=$!
    wait "$pid"
    echo $? > "$logs/$backend.code"
    wait "$tailer" 2>/dev/null
    echo "$((SECONDS - began))" > "$logs/$backend.seconds"
}

for backend in $backends; do
    while (( $(jobs -rp | wc -l) >= jobs )); do wait -n; done
    run_pass "$backend" "$@" &
done
wait

echo
echo "=== summary per backend (wall $((SECONDS - start)) s) ==="
failed=0
for backend in $backends; do
    code="$(cat "$logs/$backend.code" 2>/dev/null || echo 1)"
    summary="$(grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)|no tests ran' \
               "$logs/$backend.log" | tail -1 | tr -d '=' | xargs)"
    # Exit 5 means no test was collected: that is a failure here, never a pass.
    if [[ $code -ne 0 ]]; then status="FAILED (exit $code)"; failed=1; else status="ok"; fi
    printf '%-11s %-18s %6ss  %s\n' "$backend" "$status" \
        "$(cat "$logs/$backend.seconds" 2>/dev/null || echo '?')" "$summary"
done
exit $failed
