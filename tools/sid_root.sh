#!/usr/bin/env bash
# A Debian sid root for the CPython releases that pyenv does not have here
# (3.14, 3.15): Debian's own builds, with their -dev and -venv packages and
# the tools the suite's test hosts use. Made once, reused after.
#
#   tools/sid_root.sh build           make the root if it is not there yet
#   tools/sid_root.sh run CMD [ARG]   run CMD inside it, in this checkout
#   tools/sid_root.sh tox [ARG]       tox inside it (builds the root first)
#
# Needs root (mount, chroot, network namespaces) and mmdebstrap (Debian:
# apt-get install mmdebstrap). UDPIO_SID_ROOT says where the root lives
# (default /var/tmp/udpio-sid-root); UDPIO_SID_MIRROR which Debian mirror to
# use (default: the one this host's apt uses).
#
# Facts that shaped it:
# - The registry's sid index may be older than its Valid-Until, so apt is
#   told not to check dates; the signature is still checked, against this
#   host's Debian keyring.
# - The root is built in a temporary folder and moved into place only when
#   it is complete (tox installed too), so a killed build never looks done.
# - Every mount is made inside a private mount namespace (unshare --mount):
#   when the command ends, however it ends, the mounts are gone with it.
# - `ip netns exec` needs the root to be a mount point (it is bind-mounted
#   onto itself), a /run to keep /run/netns in, /proc, /sys and /dev.
# - pip inside uses the host's resolver and CA files.
# - CFLAGS from the caller is not passed in: it would replace the
#   interpreter's own -O2 -DNDEBUG.
set -euo pipefail

root=${UDPIO_SID_ROOT:-/var/tmp/udpio-sid-root}
checkout=$(cd "$(dirname "$0")/.." && pwd)
# What the suite needs inside: the interpreters, a compiler for the
# extension, and the tools of the test hosts (tests/netns.py) and clients.
packages="python3.14 python3.14-dev python3.14-venv python3.15 python3.15-dev python3.15-venv
gcc libc6-dev iproute2 nftables ethtool bind9-dnsutils dnsperf procps spin ca-certificates"
# Written last, with the package list: a root without it, or made from
# another list, is made again.
ready="$root/.udpio-root-ready"
recipe=$(echo $packages)

die() {
    echo "sid_root.sh: $*" >&2
    exit 1
}

mirror() {
    if [ -n "${UDPIO_SID_MIRROR:-}" ]; then
        echo "$UDPIO_SID_MIRROR"
        return
    fi
    local uri
    uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    [ -n "$uri" ] || die "no Debian mirror in this host's apt sources: set UDPIO_SID_MIRROR"
    echo "$uri"
}

# run_in ROOT CMD...: CMD inside ROOT, with /src this checkout.
run_in() {
    local target=$1
    shift
    [ "$(id -u)" = 0 ] || die "needs root (mount, chroot, network namespaces)"
    unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
        target=$1 checkout=$2
        shift 2
        mount --bind "$target" "$target"
        mount -t proc proc "$target/proc"
        mount -t sysfs sysfs "$target/sys"
        mount --rbind /dev "$target/dev"
        mount -t tmpfs tmpfs "$target/run"
        mkdir -p "$target/run/netns"
        mount -t tmpfs tmpfs "$target/tmp"
        mkdir -p "$target/src"
        mount --bind "$checkout" "$target/src"
        touch "$target/etc/resolv.conf"
        mount --bind /etc/resolv.conf "$target/etc/resolv.conf"
        if [ -d /etc/ssl/certs ]; then
            mount --bind -o ro /etc/ssl/certs "$target/etc/ssl/certs"
        fi
        keep=(PATH=/opt/tox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
              HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1
              PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
        for name in TERM CI HYPOTHESIS_PROFILE HYPOTHESIS_MATRIX_PROFILE \
                    UDPIO_TEST_REQUIRE_TOOLS UDPIO_TEST_WATCHDOG; do
            if [ -n "${!name:-}" ]; then
                keep+=("$name=${!name}")
            fi
        done
        exec chroot "$target" /usr/bin/env -i "${keep[@]}" \
            /bin/bash -c "cd /src && exec \"\$@\"" bash "$@"
    ' bash "$target" "$checkout" "$@"
}

build() {
    if [ -f "$ready" ] && [ "$(sed -n 2p "$ready")" = "$recipe" ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "needs root to build the root"
    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (apt-get install mmdebstrap)"
    local parent tmp
    parent=$(dirname "$root")
    mkdir -p "$parent"
    # A build that was killed left its temporary folder behind: remove it.
    rm -rf "$root".building.*
    tmp=$(mktemp -d "$root.building.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "sid_root.sh: making the Debian sid root in $root (about a minute and 500 MB)" >&2
    mmdebstrap --quiet --variant=minbase \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='Acquire::Check-Date "false"' \
        --include="$(echo "$recipe" | tr ' ' ',')" \
        sid "$tmp" "$(mirror)"
    run_in "$tmp" /bin/sh -c 'python3.14 -m venv /opt/tox && /opt/tox/bin/pip install --quiet "tox>=4"'
    printf '%s\n%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$recipe" >"$tmp/.udpio-root-ready"
    rm -rf "$root"
    mv "$tmp" "$root"
    trap - EXIT
}

case "${1:-}" in
build)
    build
    ;;
run)
    shift
    [ $# -gt 0 ] || die "usage: tools/sid_root.sh run CMD [ARG ...]"
    build
    run_in "$root" "$@"
    ;;
tox)
    shift
    build
    # Its own work folder inside the root: the host's .tox holds the host's
    # interpreters' environments.
    run_in "$root" tox --workdir /root/udpio-tox "$@"
    ;;
*)
    die "usage: tools/sid_root.sh build | run CMD [ARG ...] | tox [ARG ...]"
    ;;
esac
