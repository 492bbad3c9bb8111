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
# shellcheck source=deploy/tools/apt.sh
source "$(dirname "$0")/apt.sh"
# policy-rc.d keeps the package's post-install step from starting a system Prometheus.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' | ${apt_sudo} tee "${policy}" >/dev/null
    ${apt_sudo} chmod 755 "${policy}"
    trap '${apt_sudo} rm -f "${policy}"' EXIT
fi
apt_install prometheus
echo "install-prometheus.sh: $(prometheus --version 2>&1 | head -n 1)" >&2
