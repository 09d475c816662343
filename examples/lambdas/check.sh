#!/usr/bin/env bash
# Runs the Python and Go example lambdas and checks both with `modelsync lambda-check`.
# Usage: examples/lambdas/check.sh PATH_TO_MODELSYNC_BINARY
set -euo pipefail
modelsync=${1:?give the path of the modelsync binary}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/models"
printf '{"id":"m1","created":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/models/m1.json"

# Reads "listening on URL" from a starting lambda's output.
wait_url() {
  local log=$1
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$log"; then sed -n 's/^listening on //p' "$log" | head -1; return; fi
    sleep 0.1
  done
  echo "lambda did not start; its output:" >&2; cat "$log" >&2; return 1
}

python3 "$here/python/lambda.py" --models "$work/models" --host 127.0.0.1 --port 0 > "$work/python.log" &
pids+=($!)
(cd "$here/go" && go build -o "$work/go-lambda" .)
"$work/go-lambda" --models "$work/models" --listen 127.0.0.1:0 > "$work/go.log" &
pids+=($!)

for lang in python go; do
  url=$(wait_url "$work/$lang.log")
  "$modelsync" lambda-check --expect-needs-sync false "$url/needsTrain"
done
echo "both example lambdas follow the protocol"
