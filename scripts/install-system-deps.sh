#!/bin/sh
# Install the system packages the integration tests need, idempotently.
#
#   docker-registry  Debian's build of the CNCF distribution registry: the real OCI
#                    registry the release tests push Flux artifacts to (on loopback).
#   chromium         Debian's Chromium, run headless by the browser check of the Prefect
#                    UI's deployment run form (tests/integration/test_team_server.py).
#   postgresql       PostgreSQL's server binaries (initdb, pg_ctl): the inventory tests start
#                    a throwaway server on loopback (tests/pg_server.py); the package also
#                    creates the `postgres` user the server runs as when the tests run as root.
#
# Does nothing when every package is already present. Installing needs root (or
# sudo without a password); `apt-get update` runs only when the package lists are
# missing or do not know a package yet. The package starts no service here (no
# systemd in these machines); tests run `docker-registry serve CONFIG` themselves.
set -eu

PACKAGES="docker-registry chromium postgresql"

missing=""
for package in $PACKAGES; do
    # The binary has the package's name; `dpkg -s` covers a binary kept off PATH.
    if ! command -v "$package" >/dev/null 2>&1 &&
        [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    echo "install-system-deps: all present ($PACKAGES)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-system-deps: need root to install:$missing" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get; install by hand:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Refresh the package lists only when some package is unknown to them.
needs_update=0
for package in $missing; do
    candidate=$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        needs_update=1
    fi
done
if [ "$needs_update" -eq 1 ]; then
    echo "install-system-deps: apt-get update"
    $SUDO apt-get update -qq
fi

echo "install-system-deps: apt-get install -y$missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-system-deps: installed$missing"
