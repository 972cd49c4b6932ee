#!/usr/bin/env bash
# Set up a Debian 12 host for kagent: the Debian packages the node and the tests use, and a
# venv at .venv with kagent and its test extra. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# runit: a peer of bench/supervisor.py, systemd: systemd-analyze verify in the tests (neither becomes
# the init system: --no-install-recommends below, no runit-init, no systemd-sysv)
pkgs=(etcd-server etcd-client containerd runc busybox-static iproute2 kmod openssl supervisor runit systemd)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # one apt at a time, also when several checkouts set up at once
    exec 9>/tmp/kagent-setup-apt.lock
    flock 9
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    exec 9>&-
fi
# Debian's packages may start their own daemons on hosts with an init system; kagent runs its own.
for svc in etcd containerd supervisor; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "kagent set up: $(.venv/bin/kagent version | head -1)"
