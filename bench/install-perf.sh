#!/usr/bin/env bash
# Installs Debian's linux-perf if `perf` is missing: `python -m bench.cpu --perf` records
# one process of the stack with it, and the test of that option needs it in CI.
set -euo pipefail

if command -v perf >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-perf.sh: apt-get not found; install Linux perf onto PATH by hand" >&2
    exit 1
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
${sudo} apt-get update -qq
${sudo} apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
echo "install-perf.sh: $(perf --version)" >&2
