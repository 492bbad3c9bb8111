# Sourced by the install-*.sh scripts, before they change anything: ends the script where
# there is no apt-get; `apt_install PACKAGE...` installs Debian packages, as root or by sudo.
# shellcheck shell=bash

if ! command -v apt-get >/dev/null; then
    echo "${0##*/}: apt-get not found; install by hand what this script installs" >&2
    exit 1
fi
apt_sudo=""
if [[ "$(id -u)" != 0 ]]; then
    apt_sudo="sudo"
fi

apt_install() {
    DEBIAN_FRONTEND=noninteractive ${apt_sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${apt_sudo} apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}
