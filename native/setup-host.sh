#!/usr/bin/env bash
# Host setup for containerd-py: Debian packages and a CRIU that works on this
# kernel.  Run as root (`make setup` / `make host`).  Idempotent: when
# everything is already in place it only checks, which takes well under a
# second.  Prints one line per thing it installs.
#
# CRIU: the daemon always calls /opt/containerd-py/bin/criu.
#  - Debian 13 (trixie) and newer: the distribution's criu (4.x) works;
#    /opt/containerd-py/bin/criu is a symlink to /usr/sbin/criu.
#  - Debian 12 (bookworm): its criu 3.17 fails `criu check` on recent kernels
#    (vDSO symtable error).  We fetch trixie's criu and all its shared-library
#    dependencies (libc6 included) from the trixie suite of the configured
#    Debian mirror with a private apt configuration (the system's apt state
#    is not touched), unpack them with `dpkg -x` into /opt/containerd-py/criu
#    and install a wrapper /opt/containerd-py/bin/criu that starts criu with
#    the prefix's own dynamic loader and libraries.
#
# CRIU's network lock (when dumping a container that has its own network
# namespace) runs iptables-restore and ip6tables-restore from PATH; the
# iptables package's default nf_tables variants work.
set -euo pipefail

PREFIX=/opt/containerd-py
CRIU_PREFIX=$PREFIX/criu
CRIU_BIN=$PREFIX/bin/criu
TRIXIE_CRIU_PKGS="criu libcompel1"

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

say() { echo "setup-host: $*"; }
die() { echo "setup-host: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and $PREFIX)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "this script needs a Debian system (dpkg, apt-get)"

# shellcheck disable=SC1091
. /etc/os-release
DEB_MAJOR=${VERSION_ID%%.*}
CODENAME=${VERSION_CODENAME:-}
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
# network lock, iproute2 (the CRI brings up loopback in pod namespaces), and
# what the Python dependencies need to build
# (python-prctl: libcap-dev; cffi: libffi-dev; both: gcc, python3-dev).
# containernetworking-plugins: the CNI plugins (bridge, host-local, portmap,
# firewall, loopback, tuning) the daemon runs for its networks, in /usr/lib/cni.
apt_install runc crun busybox-static iptables iproute2 containernetworking-plugins \
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

# Download trixie's criu + library closure and unpack it into $CRIU_PREFIX.
install_trixie_criu() {
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local mirror work apt_opts pkgs p ldso libdirs new
    mirror=$(debian_mirror)
    work=$(mktemp -d /tmp/containerd-py-criu.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work"/{etc/apt.conf.d,etc/preferences.d,etc/trusted.gpg.d,lists/partial,cache/archives/partial,debs,root}
    echo "deb [signed-by=$keyring] $mirror trixie main" >"$work/etc/sources.list"
    apt_opts=(
        -o "Dir::Etc=$work/etc" -o "Dir::Etc::sourcelist=$work/etc/sources.list"
        -o "Dir::Etc::sourceparts=-" -o "Dir::Etc::parts=$work/etc/apt.conf.d"
        -o "Dir::Etc::preferencesparts=$work/etc/preferences.d"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
        -o "Dir::State::status=/dev/null" -o "APT::Install-Recommends=false"
        -o "APT::Architecture=$(dpkg --print-architecture)"
        -o "Debug::NoLocking=1"
    )
    if ! apt-get "${apt_opts[@]}" update -qq >"$work/update.log" 2>&1; then
        if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|signature' "$work/update.log"; then
            # An old debian-archive-keyring predates the trixie keys; bookworm's
            # point releases ship them.  Upgrade it and retry once.
            apt_update_once
            apt-get install -y -qq debian-archive-keyring >/dev/null 2>&1 \
                || die "could not upgrade debian-archive-keyring"
            say "upgraded apt package debian-archive-keyring $(dpkg-query -W -f='${Version}' debian-archive-keyring)"
            apt-get "${apt_opts[@]}" update -qq >"$work/update.log" 2>&1 \
                || { cat "$work/update.log" >&2; die "cannot read the trixie suite from $mirror"; }
        else
            cat "$work/update.log" >&2; die "cannot read the trixie suite from $mirror"
        fi
    fi
    # With an empty dpkg status, a simulated install lists the whole
    # dependency closure (libc6 included).
    pkgs=$(apt-get "${apt_opts[@]}" install -s $TRIXIE_CRIU_PKGS 2>"$work/sim.log" | awk '/^Inst /{print $2}') \
        || true
    [ -n "$pkgs" ] || { cat "$work/sim.log" >&2; die "cannot resolve trixie criu's dependencies"; }
    ( cd "$work/debs" && apt-get "${apt_opts[@]}" download $pkgs >"$work/download.log" 2>&1 ) \
        || { cat "$work/download.log" >&2; die "downloading trixie criu packages failed"; }
    for p in "$work"/debs/*.deb; do dpkg -x "$p" "$work/root" || die "dpkg -x $p failed"; done

    [ -x "$work/root/usr/sbin/criu" ] || die "trixie criu package has no usr/sbin/criu"
    local roots="" r
    for r in usr/lib lib; do [ -d "$work/root/$r" ] && [ ! -L "$work/root/$r" ] && roots="$roots $r"; done
    ldso=$(cd "$work/root" && find $roots -maxdepth 2 -type f -name 'ld-linux*.so.*' | sort | head -n1)
    [ -n "$ldso" ] || die "no dynamic loader found in trixie libc6"
    libdirs=$(cd "$work/root" && find $roots -maxdepth 1 -mindepth 1 -type d -name '*-linux-gnu*' | sort -u)
    [ -n "$libdirs" ] || die "no multiarch library directory in trixie packages"

    # replace the prefix atomically-ish
    new=$CRIU_PREFIX.new
    rm -rf "$new"
    mkdir -p "$PREFIX/bin"
    mv "$work/root" "$new"
    printf '%s\n' $pkgs >"$new/PACKAGES"
    ( cd "$work/debs" && ls ) >"$new/DEBS"
    rm -rf "$CRIU_PREFIX.old"
    [ -e "$CRIU_PREFIX" ] && mv "$CRIU_PREFIX" "$CRIU_PREFIX.old"
    mv "$new" "$CRIU_PREFIX"
    rm -rf "$CRIU_PREFIX.old"

    local lp="" d
    for d in $libdirs; do lp="${lp:+$lp:}$CRIU_PREFIX/$d"; done
    rm -f "$CRIU_BIN"
    cat >"$CRIU_BIN.tmp" <<EOF
#!/bin/sh
# Debian trixie's criu with its own libraries (installed by native/setup-host.sh).
# The prefix's own dynamic loader is used so the host's older glibc is not.
exec "$CRIU_PREFIX/$ldso" --library-path "$lp" "$CRIU_PREFIX/usr/sbin/criu" "\$@"
EOF
    chmod 755 "$CRIU_BIN.tmp"
    mv "$CRIU_BIN.tmp" "$CRIU_BIN"
    rm -rf "$work"
    trap - EXIT
}

criu_version() { "$1" --version 2>/dev/null | awk '/^Version/{print $2}'; }

if criu_ok "$CRIU_BIN"; then
    :   # already fine
elif [ "${DEB_MAJOR:-0}" -ge 13 ] 2>/dev/null || [[ "$CODENAME" =~ ^(trixie|forky|duke|sid)$ ]]; then
    apt_install criu
    mkdir -p "$PREFIX/bin"
    ln -sfn /usr/sbin/criu "$CRIU_BIN"
    criu_ok "$CRIU_BIN" || { "$CRIU_BIN" check >&2 || true; die "Debian's criu $(criu_version /usr/sbin/criu) fails 'criu check' on this kernel"; }
    say "installed $CRIU_BIN -> /usr/sbin/criu (criu $(criu_version "$CRIU_BIN"))"
else
    install_trixie_criu
    if ! criu_ok "$CRIU_BIN"; then
        "$CRIU_BIN" check >&2 || true
        die "trixie criu in $CRIU_PREFIX fails 'criu check' on this kernel"
    fi
    say "installed criu $(criu_version "$CRIU_BIN") from Debian trixie ($(wc -l <"$CRIU_PREFIX/PACKAGES") packages) into $CRIU_PREFIX"
    say "installed wrapper $CRIU_BIN"
fi
