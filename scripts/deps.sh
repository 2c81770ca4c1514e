#!/usr/bin/env bash
# Install the Debian packages Crest needs to build, run and test.
#
# Idempotent and fast when nothing is missing: one dpkg-query call, no apt.
# Only when something is missing does it run apt-get update + install, which
# needs root.  Package installs must not leave distro services (nginx, redis,
# postgres) running: Crest starts its own instances on its own ports.
set -euo pipefail

PACKAGES=(
    build-essential nginx-core nginx-dev
    libpq-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
    libmsgpack-dev libargon2-dev libssl-dev
    postgresql postgresql-contrib redis-server
    clang libclang-rt-14-dev wrk
    nodejs npm perl python3-jwt python3-cryptography
    yt-dlp ffmpeg
)

# Services whose Debian packages start a daemon from their postinst script.
SERVICES=(nginx redis-server postgresql)

# A package counts as present when it is installed, or when an installed
# package Provides it: NodeSource's nodejs bundles npm and Provides/Conflicts
# "npm", so asking apt for Debian's npm would try to remove Node 20.
declare -A have=()
while IFS='|' read -r status pkg provides; do
    [[ $status == ii* ]] || continue
    have[$pkg]=1
    if [[ -n $provides ]]; then
        IFS=',' read -ra prov <<<"$provides"
        for p in "${prov[@]}"; do
            p=${p%%(*}          # drop a version constraint: "foo (= 1.2)"
            p=${p//[[:space:]]/}
            [[ -n $p ]] && have[$p]=1
        done
    fi
done < <(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' 2>/dev/null)

missing=()
for p in "${PACKAGES[@]}"; do
    [[ -n ${have[$p]:-} ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: run as root (e.g. sudo scripts/deps.sh) to install them" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"

service_running() {
    [[ -x /etc/init.d/$1 ]] && /etc/init.d/"$1" status >/dev/null 2>&1
}

# Remember which services were already running, so that afterwards we stop
# only the ones this install started, never a developer's own.
declare -A was_running=()
for s in "${SERVICES[@]}"; do
    if service_running "$s"; then was_running[$s]=1; fi
done

# policy-rc.d exiting 101 is Debian's documented way of telling invoke-rc.d
# not to start services from maintainer scripts.  Install one only for the
# duration of this run, and only if the system has none of its own.
POLICY=/usr/sbin/policy-rc.d
own_policy=
cleanup() {
    if [[ -n $own_policy ]]; then rm -f "$POLICY"; fi
}
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# temporary, written by crest scripts/deps.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    own_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

# Belt and braces: if a postinst started a service anyway, stop it with its
# own init script (by pid file), not by killing processes by name.
for s in "${SERVICES[@]}"; do
    if [[ -z ${was_running[$s]:-} ]] && service_running "$s"; then
        echo "deps.sh: stopping $s started by the package install"
        /etc/init.d/"$s" stop || echo "deps.sh: warning: could not stop $s" >&2
    fi
done

echo "deps.sh: done"
