#!/usr/bin/env bash
# need.sh TOOLS WHO: says exactly which of the comma-separated TOOLS is missing, and fails.
# docker counts as present only when a Docker engine answers, not just the CLI.
set -uo pipefail

tools="$1"
who="$2"
missing=()

for tool in ${tools//,/ }; do
    case "${tool}" in
        docker)
            docker="${DOCKER:-docker}"
            if ! command -v "${docker}" >/dev/null 2>&1; then
                missing+=("Docker is missing: install Docker Engine (the docker CLI and its daemon)")
            elif ! "${docker}" info >/dev/null 2>&1; then
                missing+=("Docker is installed but no Docker engine answers: start the daemon (dockerd) or set DOCKER_HOST")
            fi
            ;;
        kind)
            if ! command -v "${KIND:-kind}" >/dev/null 2>&1; then
                missing+=("kind is missing: install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
            fi
            ;;
        *)
            if ! command -v "${tool}" >/dev/null 2>&1; then
                missing+=("${tool} is missing: install it and put it on PATH")
            fi
            ;;
    esac
done

if (( ${#missing[@]} )); then
    for line in "${missing[@]}"; do
        echo "${who}: ${line}" >&2
    done
    exit 1
fi
