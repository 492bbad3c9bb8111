# Sourced by the install-*.sh scripts: `apt_install PACKAGE...` installs Debian packages,
# as root or through sudo, or says what to install by hand where there is no apt-get.
# shellcheck shell=bash

apt_sudo=""
if [[ "$(id -u)" != 0 ]]; then
    apt_sudo="sudo"
fi

apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "$(basename "$0"): apt-get not found; install $* by hand" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive ${apt_sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${apt_sudo} apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}
