#!/usr/bin/env bash
# Start a kagent controller on this machine (as root) in the background, wait until
# `kagent status` shows every component healthy, and print the status.
#
# The full control plane runs when kube-apiserver, kube-controller-manager, kube-scheduler and
# konnectivity-server are in <data-dir>/bin (or on PATH); without them this starts the
# supported etcd-only topology. Stop it with: kill "$(cat /run/kagent/kagent.pid)".
set -euo pipefail
cd "$(dirname "$0")/.."
kagent=(.venv/bin/kagent)
data=${KAGENT_DATA_DIR:-/var/lib/kagent}
log=${KAGENT_LOG:-/var/log/kagentcontroller.log}

if "${kagent[@]}" status >/dev/null 2>&1; then
    echo "a kagent controller is already running:"
    exec "${kagent[@]}" status
fi

flags=(controller --init)
missing=()
for b in kube-apiserver kube-controller-manager kube-scheduler konnectivity-server; do
    [ -x "$data/bin/$b" ] || command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
if ((${#missing[@]})); then
    echo "not found: ${missing[*]} (put them in $data/bin for the full control plane); starting etcd only"
    flags+=(--disable-components "kube-apiserver,kube-controller-manager,kube-scheduler,konnectivity-server")
fi

mkdir -p "$(dirname "$log")"
echo "starting: kagent ${flags[*]}  (log: $log)"
setsid "${kagent[@]}" --log-format json "${flags[@]}" >>"$log" 2>&1 < /dev/null &
agent=$!

for _ in $(seq 1 240); do
    if ! kill -0 "$agent" 2>/dev/null; then
        echo "kagent exited; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    if out=$("${kagent[@]}" status -o json 2>/dev/null) && .venv/bin/python - "$out" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
comps = doc["components"]
sys.exit(0 if comps and all(c["state"] == "running" and c["health"] == "healthy" for c in comps) else 1)
PY
    then
        exec "${kagent[@]}" status
    fi
    sleep 0.5
done
echo "kagent did not become healthy within 120 s; see $log and \`kagent status\`" >&2
"${kagent[@]}" status >&2 || true
exit 1
