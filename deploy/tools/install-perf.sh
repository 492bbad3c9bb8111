#!/usr/bin/env bash
# Installs Debian's linux-perf if `perf` is missing: `python -m bench.cpu --perf` records
# one process of the stack with it, and the test of that option needs it in CI.
set -euo pipefail

if command -v perf >/dev/null; then
    exit 0
fi
# shellcheck source=deploy/tools/apt.sh
source "$(dirname "$0")/apt.sh"
apt_install linux-perf
echo "install-perf.sh: $(perf --version)" >&2
