#!/usr/bin/env bash
# Installs Debian's prometheus package (the prometheus and promtool binaries) if missing.
#
# The observability tests run a real Prometheus against the local stack and check the
# alert rules with promtool. Running it again with both binaries present does nothing.
# The package's own service is not started: the tests run their own Prometheus.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-prometheus.sh: apt-get not found; install prometheus and promtool" \
         "(2.42 or later) onto PATH by hand" >&2
    exit 1
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
${sudo} apt-get update -qq
# policy-rc.d keeps the package's post-install step from starting a system Prometheus.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' | ${sudo} tee "${policy}" >/dev/null
    ${sudo} chmod 755 "${policy}"
    trap '${sudo} rm -f "${policy}"' EXIT
fi
${sudo} apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "install-prometheus.sh: $(prometheus --version 2>&1 | head -n 1)" >&2
