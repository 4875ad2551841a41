#!/usr/bin/env bash
# Host setup for containerd-py: Debian packages and a CRIU that works on this
# kernel.  Run as root (`make setup` / `make host`).  Idempotent: when
# everything is already in place it only checks, which takes well under a
# second.  Prints one line per thing it installs.
#
# CRIU: the daemon always calls /opt/containerd-py/bin/criu, on Debian 12 and
# 13 alike a criu from Debian unstable (4.2 or later) in a private prefix.
#  - Kernels 6.16 and later refuse SO_PASSCRED on inet sockets, and CRIU
#    before 4.2 then fails every dump of a process with an internet socket
#    ("sockets: Can't get 1:16 opt: Operation not supported").  Debian 12's
#    criu 3.17 also fails `criu check` outright (vDSO symtable error), and
#    Debian 13's 4.1.1 has the socket bug; 4.2 fixes it.
#  - We fetch unstable's criu and its whole shared-library closure (libc6
#    included) from the configured Debian mirror with a private apt
#    configuration: the host's sources, preferences, lists and dpkg state are
#    never touched, so nothing else on the host can be upgraded from
#    unstable and nothing is left behind to pin.  The packages are unpacked
#    with `dpkg -x` into /opt/containerd-py/criu-VERSION, and the wrapper
#    /opt/containerd-py/bin/criu starts criu with the prefix's own dynamic
#    loader and libraries (the host's older glibc cannot run it).  The
#    wrapper is swapped atomically, so a daemon running checkpoints while
#    this script upgrades CRIU never sees a half-installed one.
#  - CONTAINERD_PY_CRIU_SUITE picks another suite ("trixie-backports" once
#    4.2 is there) and CONTAINERD_PY_CRIU_MIRROR another archive, e.g.
#    http://snapshot.debian.org/archive/debian/20261201T000000Z for a fixed
#    day of unstable (its expired Valid-Until is then accepted).
#
# CRIU's network lock (when dumping a container that has its own network
# namespace) runs iptables-restore and ip6tables-restore from PATH; the
# iptables package's default nf_tables variants work.  Dumping a network
# namespace runs `ip` (iproute2) for its addresses and routes.
set -euo pipefail

PREFIX=/opt/containerd-py
CRIU_BIN=$PREFIX/bin/criu
CRIU_PKGS="criu libcompel1"
CRIU_SUITE=${CONTAINERD_PY_CRIU_SUITE:-unstable}
# 4.2 is the first CRIU that dumps inet sockets on kernels >= 6.16.
CRIU_MIN=4.2

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

say() { echo "setup-host: $*"; }
die() { echo "setup-host: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and $PREFIX)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "this script needs a Debian system (dpkg, apt-get)"

# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = debian ] || say "warning: not Debian (ID=${ID:-?}); trying anyway"

# ---------------------------------------------------------------- apt packages
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

apt_install() {
    local missing=() p
    for p in "$@"; do is_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update_once
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/setup-host-apt.log 2>&1 \
        || { tail -n 30 /tmp/setup-host-apt.log >&2; die "apt-get install ${missing[*]} failed (log: /tmp/setup-host-apt.log)"; }
    for p in "${missing[@]}"; do
        say "installed apt package $p $(dpkg-query -W -f='${Version}' "$p")"
    done
}

# runtimes, the busybox used for the test bundles, iptables for CRIU's
# network lock and its network namespace dumps, iproute2 (CRIU runs ip to
# dump a network namespace; the CRI brings up loopback in pod namespaces),
# tini (its static binary is the `init: true` of a container, as `docker run
# --init`), and what the Python dependencies need to build (python-prctl:
# libcap-dev; cffi: libffi-dev; both: gcc, python3-dev).
# containernetworking-plugins: the CNI plugins (bridge, host-local, portmap,
# firewall, loopback, tuning) the daemon runs for its networks, in /usr/lib/cni.
apt_install runc crun busybox-static iptables iproute2 tini containernetworking-plugins \
    gcc libc6-dev libcap-dev libffi-dev pkg-config \
    python3 python3-dev python3-venv ca-certificates

# ------------------------------------------------------------------------ CRIU
criu_ok() {  # criu_ok BINARY: does `criu check` pass?
    [ -x "$1" ] || return 1
    local out
    out=$("$1" check 2>&1) || return 1
    [[ "$out" == *"Looks good"* ]]
}

have_iptables_restore() {
    # criu 4.1 locks a container's network by running `iptables-restore -w
    # --noflush` and `ip6tables-restore -w --noflush` in its network namespace
    # (seen with strace); the nf_tables variants (Debian's default
    # alternative) work.  It dumps tmpfs mounts with tar + gzip (Essential).
    command -v iptables-restore >/dev/null && command -v ip6tables-restore >/dev/null
}
have_iptables_restore || die "iptables-restore / ip6tables-restore not on PATH; CRIU needs them for its network lock"

# The main Debian archive URI of the configured sources (not the security one).
debian_mirror() {
    local uri=""
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        uri=$(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' \
                /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | grep -m1 'debian' || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^(https?|ftp):/) {print $i; break}}' \
                /etc/apt/sources.list | grep -v -- '-security' | grep -m1 'debian' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

criu_version() { "$1" --version 2>/dev/null | awk '/^Version/{print $2}'; }

criu_good() {  # criu_good BINARY: recent enough, and `criu check` passes
    local v
    v=$(criu_version "$1") && [ -n "$v" ] || return 1
    dpkg --compare-versions "$v" ge "$CRIU_MIN" || return 1
    criu_ok "$1"
}

# Download $CRIU_SUITE's criu + library closure and unpack it into a prefix
# of its own; echo that prefix's loader and library path.
install_private_criu() {
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local mirror work apt_opts pkgs p ldso libdirs ver dest lp d old
    mirror=${CONTAINERD_PY_CRIU_MIRROR:-$(debian_mirror)}
    work=$(mktemp -d /tmp/containerd-py-criu.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work"/{etc/apt.conf.d,etc/preferences.d,lists/partial,cache/archives/partial,debs,root}
    echo "deb [signed-by=$keyring] $mirror $CRIU_SUITE main" >"$work/etc/sources.list"
    # Keep the host's proxy settings (the only host apt setting that matters
    # for fetching); everything else of apt's is private to this run.
    apt-config dump 2>/dev/null | grep -E '^Acquire::[A-Za-z]+::[Pp]roxy' \
        >"$work/etc/apt.conf.d/50host-proxy" || true
    apt_opts=(
        -o "Dir::Etc=$work/etc" -o "Dir::Etc::sourcelist=$work/etc/sources.list"
        -o "Dir::Etc::sourceparts=-" -o "Dir::Etc::parts=$work/etc/apt.conf.d"
        -o "Dir::Etc::preferencesparts=$work/etc/preferences.d"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
        -o "Dir::State::status=/dev/null" -o "APT::Install-Recommends=false"
        -o "APT::Architecture=$(dpkg --print-architecture)"
        -o "Debug::NoLocking=1"
        # the private dirs are root's (mktemp); the archive signature is
        # what is trusted, not the download sandbox
        -o "APT::Sandbox::User=root"
    )
    # A snapshot's Release files are signed but long past their Valid-Until.
    [[ "$mirror" == *snapshot.debian.org* ]] && apt_opts+=(-o "Acquire::Check-Valid-Until=false")
    if ! apt-get "${apt_opts[@]}" update -qq --error-on=any >"$work/update.log" 2>&1; then
        if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|signature' "$work/update.log"; then
            # An old debian-archive-keyring predates the keys unstable is
            # signed with; the point releases ship them.  Upgrade it, retry.
            apt_update_once
            apt-get install -y -qq debian-archive-keyring >/dev/null 2>&1 \
                || die "could not upgrade debian-archive-keyring"
            say "upgraded apt package debian-archive-keyring $(dpkg-query -W -f='${Version}' debian-archive-keyring)"
            apt-get "${apt_opts[@]}" update -qq --error-on=any >"$work/update.log" 2>&1 \
                || { cat "$work/update.log" >&2; die "cannot read the $CRIU_SUITE suite from $mirror"; }
        else
            cat "$work/update.log" >&2; die "cannot read the $CRIU_SUITE suite from $mirror"
        fi
    fi
    ver=$(apt-cache "${apt_opts[@]}" show criu 2>/dev/null | awk '/^Version:/{print $2; exit}' || true)
    [ -n "$ver" ] || { cat "$work/update.log" >&2; die "no criu package in $CRIU_SUITE at $mirror"; }
    dpkg --compare-versions "$ver" ge "$CRIU_MIN" \
        || die "$CRIU_SUITE has criu $ver; CRIU >= $CRIU_MIN is needed on kernels >= 6.16"
    # With an empty dpkg status, a simulated install lists the whole
    # dependency closure (libc6 included).
    pkgs=$(apt-get "${apt_opts[@]}" install -s $CRIU_PKGS 2>"$work/sim.log" | awk '/^Inst /{print $2}') \
        || true
    [ -n "$pkgs" ] || { cat "$work/sim.log" >&2; die "cannot resolve $CRIU_SUITE criu's dependencies"; }
    ( cd "$work/debs" && apt-get "${apt_opts[@]}" download $pkgs >"$work/download.log" 2>&1 ) \
        || { cat "$work/download.log" >&2; die "downloading $CRIU_SUITE criu packages failed"; }
    for p in "$work"/debs/*.deb; do dpkg -x "$p" "$work/root" || die "dpkg -x $p failed"; done

    [ -x "$work/root/usr/sbin/criu" ] || die "$CRIU_SUITE criu package has no usr/sbin/criu"
    local roots="" r
    for r in usr/lib lib; do [ -d "$work/root/$r" ] && [ ! -L "$work/root/$r" ] && roots="$roots $r"; done
    ldso=$(cd "$work/root" && find $roots -maxdepth 2 -type f -name 'ld-linux*.so.*' | sort | head -n1)
    [ -n "$ldso" ] || die "no dynamic loader found in $CRIU_SUITE libc6"
    libdirs=$(cd "$work/root" && find $roots -maxdepth 1 -mindepth 1 -type d -name '*-linux-gnu*' | sort -u)
    [ -n "$libdirs" ] || die "no multiarch library directory in $CRIU_SUITE packages"

    # A directory per version: the wrapper of the old one keeps working
    # until the new wrapper replaces it in one rename.
    dest=$PREFIX/criu-${ver//[:~]/_}
    rm -rf "$dest.new"
    mkdir -p "$PREFIX/bin"
    mv "$work/root" "$dest.new"
    printf '%s\n' $pkgs >"$dest.new/PACKAGES"
    ( cd "$work/debs" && ls ) >"$dest.new/DEBS"
    echo "$CRIU_SUITE $mirror" >"$dest.new/SOURCE"
    rm -rf "$dest"
    mv "$dest.new" "$dest"

    lp=""
    for d in $libdirs; do lp="${lp:+$lp:}$dest/$d"; done
    cat >"$CRIU_BIN.tmp" <<WRAPPER
#!/bin/sh
# Debian $CRIU_SUITE's criu $ver with its own libraries (installed by
# native/setup-host.sh).  The prefix's own dynamic loader is used so the
# host's older glibc is not.
exec "$dest/$ldso" --library-path "$lp" "$dest/usr/sbin/criu" "\$@"
WRAPPER
    chmod 755 "$CRIU_BIN.tmp"
    if ! criu_good "$CRIU_BIN.tmp"; then
        "$CRIU_BIN.tmp" check >&2 || true
        rm -f "$CRIU_BIN.tmp"
        die "criu $ver from $CRIU_SUITE (in $dest) fails 'criu check' on this kernel"
    fi
    mv -T "$CRIU_BIN.tmp" "$CRIU_BIN"
    # Earlier installs: the old single prefix, other versions.
    for old in "$PREFIX/criu" "$PREFIX"/criu-*; do
        [ -e "$old" ] && [ "$old" != "$dest" ] && rm -rf "$old"
    done
    rm -rf "$work"
    trap - EXIT
    say "installed criu $(criu_version "$CRIU_BIN") from Debian $CRIU_SUITE ($(wc -l <"$dest/PACKAGES") packages) into $dest"
    say "installed wrapper $CRIU_BIN"
}

if ! criu_good "$CRIU_BIN"; then
    # Also replaces what earlier versions of this script installed: a
    # symlink to Debian 13's /usr/sbin/criu (4.1.1) or trixie's criu in
    # $PREFIX/criu.
    install_private_criu
fi
