#!/usr/bin/env bash
# The Debian packages the tests need beyond Python, installed when missing.
#
#   chromium        the browser test of the Dagster UI (pintrest_assets_tests/ui)
#   mariadb-server  the MySQL-path tests (a private mariadbd started by the tests)
#   postgresql      the PostgreSQL tests (a private postgres started by the tests)
#   nodejs, npm     the Kinesis tests (kinesalite, installed with npm on first use)
#
# The tests start their own servers from these binaries, so the packages' services are not
# started here. As root with apt-get, the missing packages are installed quietly, with one line
# saying which. Otherwise (or when apt-get fails) this prints what is missing and how to install
# it, and exits 0: the tests that need a missing part skip. With --require (`make test-system`)
# it exits 1 instead.
# When nothing is missing it prints nothing and touches no network.
set -euo pipefail

require=0
[ "${1:-}" = "--require" ] && require=1

# Where the tests look for the binaries (pintrest_assets_tests/servers.py): PATH, and the
# directories Debian installs them in, which are not on every user's PATH.
has() {
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}
has_postgres() {
    local dir
    for dir in $(printf '%s' "$PATH" | tr ':' ' ') /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
    done
    return 1
}

missing=()   # "package:what needs it"
has chromium || missing+=("chromium:browser test")
{ has mariadbd && has mariadb-install-db; } || missing+=("mariadb-server:MySQL tests")
has_postgres || missing+=("postgresql:PostgreSQL tests")
{ has node && has npm; } || missing+=("nodejs npm:Kinesis tests")

[ ${#missing[@]} -eq 0 ] && exit 0

packages=() needs=""
for item in "${missing[@]}"; do
    read -ra names <<<"${item%%:*}"
    packages+=("${names[@]}")
    needs="${needs:+$needs, }${item#*:}"
done
what="${packages[*]} (for the $needs)"

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        how="sudo make test-system"
    else
        how="install them with the system's package manager"
    fi
    echo "provision-test-system: missing ${what}; those tests will skip. To install: ${how}" >&2
    exit "$require"
fi

echo "provision-test-system: installing ${what}" >&2
log="$(mktemp -t provision-test-system.XXXXXX.log)"
# Keep the packages' services from starting (a policy-rc.d that forbids it, for the duration of
# the install, unless the machine already has one): the tests run their own servers.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { [ "$own_policy" -eq 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "provision-test-system: apt-get failed (full log: $log); the tests that need ${packages[*]} will skip" >&2
    exit "$require"
fi
rm -f "$log"
