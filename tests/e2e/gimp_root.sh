#!/usr/bin/env bash
# gimp_root.sh - build (once) and mount a Debian chroot with a real GIMP 3 for
# SharpFu's end-to-end tests.
#
# Usage:
#   gimp_root.sh {3.0|3.2} [ROOT]            build if needed, mount, print gimp-console path
#   gimp_root.sh --umount {3.0|3.2} [ROOT]   unmount proc/sys/dev(/pts,/shm) of ROOT
#   gimp_root.sh --remove {3.0|3.2} [ROOT]   unmount and delete ROOT
#
# Default ROOT: ${SHARPFU_GIMP_ROOTS:-$HOME/.cache/sharpfu/gimp-roots}/gimp-<ver>
#
#   3.0 -> Debian trixie,   gimp-console-3.0, plug-ins in ROOT/root/.config/GIMP/3.0/plug-ins
#   3.2 -> Debian unstable, gimp-console-3.2, plug-ins in ROOT/root/.config/GIMP/3.2/plug-ins
#
# Idempotent: if ROOT already holds a working gimp-console it only (re)mounts
# the pseudo file systems and exits.  A build happens in ROOT.partial and is
# renamed to ROOT only when it passed its checks, so a half-built root is never
# taken as done.  The last line printed on success is the absolute path of the
# gimp-console binary on the host (ROOT/usr/bin/gimp-console-<ver>); inside the
# chroot it is /usr/bin/gimp-console-<ver>.  Run GIMP with e.g.
#   chroot ROOT gimp-console-3.0 -idf --batch-interpreter=python-fu-eval -b - --quit < script.py
#
# Environment:
#   SHARPFU_GIMP_ROOTS     parent folder of the default roots
#   SHARPFU_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# Must run as root (debootstrap, mount, chroot).  Everything needed on the host
# (debootstrap, debian-archive-keyring) is installed by this script with apt-get.
set -euo pipefail

PROG=$(basename "$0")
MIRROR=${SHARPFU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# gimp + Python GI bindings + pyzmq for the plug-in; xvfb/xauth/xdotool let a test run the
# GUI gimp-<ver> under Xvfb and press Ctrl+Z (there is no PDB procedure that performs an undo)
PACKAGES=(gimp python3-gi gir1.2-gimp-3.0 python3-zmq xvfb xauth xdotool)
MOUNTS=(proc sys dev dev/pts dev/shm)   # mount order; unmount is the reverse

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage() {
    cat >&2 <<EOF
usage: $PROG {3.0|3.2} [ROOT]
       $PROG --umount {3.0|3.2} [ROOT]
       $PROG --remove {3.0|3.2} [ROOT]
default ROOT: \${SHARPFU_GIMP_ROOTS:-\$HOME/.cache/sharpfu/gimp-roots}/gimp-<ver>
EOF
    exit 2
}

# ---------------------------------------------------------------- arguments
ACTION=build
ARGS=()
for a in "$@"; do
    case "$a" in
        --umount|--unmount) ACTION=umount ;;
        --remove) ACTION=remove ;;
        -h|--help) usage ;;
        -*) log "unknown option: $a"; usage ;;
        *) ARGS+=("$a") ;;
    esac
done
[ ${#ARGS[@]} -ge 1 ] && [ ${#ARGS[@]} -le 2 ] || usage
VER=${ARGS[0]}
case "$VER" in
    3.0) SUITE=trixie;   APT_OPTS=(-o Dpkg::Use-Pty=0) ;;
    # unstable's Release file on the mirror may be past its Valid-Until date
    3.2) SUITE=unstable; APT_OPTS=(-o Dpkg::Use-Pty=0 -o Acquire::Check-Valid-Until=false) ;;
    *) log "unsupported GIMP version '$VER' (want 3.0 or 3.2)"; usage ;;
esac
if [ ${#ARGS[@]} -eq 2 ]; then
    ROOT=${ARGS[1]}
else
    ROOT=${SHARPFU_GIMP_ROOTS:-${HOME:-/root}/.cache/sharpfu/gimp-roots}/gimp-$VER
fi
[ -n "$ROOT" ] || die "empty ROOT"
ROOT=$(realpath -m -- "$ROOT")
[ "$ROOT" != / ] || die "refusing to use / as ROOT"
PARTIAL=$ROOT.partial
BIN_IN_CHROOT=/usr/bin/gimp-console-$VER

[ "$(id -u)" -eq 0 ] || die "must run as root (needs debootstrap, mount and chroot)"

# ---------------------------------------------------------------- mounts
is_mounted() { mountpoint -q -- "$1" 2>/dev/null; }

mount_all() {   # mount_all DIR
    local r=$1 m
    for m in "${MOUNTS[@]}"; do
        mkdir -p -- "$r/$m"
        is_mounted "$r/$m" && continue
        case "$m" in
            proc) mount -t proc proc "$r/proc" \
                      || die "cannot mount proc on $r/proc" ;;
            sys) mount -t sysfs sysfs "$r/sys" 2>/dev/null \
                     || mount --rbind /sys "$r/sys" \
                     || die "cannot mount sysfs on $r/sys"
                 mount --make-rslave "$r/sys" 2>/dev/null || true ;;
            dev) mount --bind /dev "$r/dev" || die "cannot bind /dev on $r/dev"
                 # never let mounts below ROOT/dev propagate back to the host's /dev
                 mount --make-slave "$r/dev" 2>/dev/null || true ;;
            dev/pts) mount --bind /dev/pts "$r/dev/pts" \
                         || die "cannot bind /dev/pts on $r/dev/pts" ;;
            dev/shm) mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm" \
                         || die "cannot mount tmpfs on $r/dev/shm" ;;
        esac
    done
}

umount_all() {  # umount_all DIR ; returns non-zero if something stays mounted
    local r=$1 i m rc=0
    [ -d "$r" ] || return 0
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        m=${MOUNTS[$i]}
        # loop: a path may carry stacked mounts
        while is_mounted "$r/$m"; do
            umount -- "$r/$m" 2>/dev/null || umount -R -- "$r/$m" 2>/dev/null \
                || umount -l -- "$r/$m" 2>/dev/null || { rc=1; break; }
        done
    done
    # anything else still mounted below r (e.g. by a test) - unmount deepest first
    local left
    left=$(awk -v r="$r/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r)
    if [ -n "$left" ]; then
        while read -r m; do
            umount -- "$m" 2>/dev/null || umount -l -- "$m" 2>/dev/null || rc=1
        done <<<"$left"
    fi
    return $rc
}

safe_rm() {     # delete a root folder, never following into a mount
    local r=$1
    [ -e "$r" ] || return 0
    umount_all "$r" || die "could not unmount everything below $r; not deleting it"
    if awk -v r="$r/" 'index($2, r) == 1 { f=1 } END { exit !f }' /proc/self/mounts; then
        die "something is still mounted below $r; not deleting it"
    fi
    rm -rf --one-file-system -- "$r"
}

# ---------------------------------------------------------------- checks
chroot_env() {  # run a command in chroot DIR with a clean environment
    local r=$1; shift
    ${CHROOT_TIMEOUT:+timeout "$CHROOT_TIMEOUT"} env -i HOME=/root USER=root LOGNAME=root LC_ALL=C.UTF-8 LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive TERM=dumb \
        ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
        chroot "$r" "$@"
}

quick_ok() {    # cheap check of an existing root (after mounting)
    local r=$1
    [ -x "$r$BIN_IN_CHROOT" ] || return 1
    [ -f "$r/etc/sharpfu-gimp-root" ] || return 1
    chroot_env "$r" "$BIN_IN_CHROOT" --version >/dev/null 2>&1
}

missing_packages() {    # print the PACKAGES not installed in root DIR
    local r=$1 p st
    for p in "${PACKAGES[@]}"; do
        # shellcheck disable=SC2016  # ${db:Status-Abbrev} is a dpkg-query field, not a shell expansion
        st=$(chroot_env "$r" dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        case "$st" in ii*) ;; *) echo "$p" ;; esac
    done
}

ensure_packages() {     # a root built by an older version of this script may lack packages
    local r=$1 miss
    miss=$(missing_packages "$r" | tr '\n' ' ')
    [ -n "${miss// /}" ] || return 0
    log "installing missing packages in $r: $miss"
    # shellcheck disable=SC2086
    { chroot_env "$r" apt-get "${APT_OPTS[@]}" update >&2 &&
      chroot_env "$r" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $miss >&2 &&
      chroot_env "$r" apt-get clean >&2; } \
        || die "could not install $miss in $r; remove the root ($PROG --remove $VER${ARGS[1]:+ $ROOT}) and run again"
}

full_check() {  # run GIMP headless with python-fu-eval and check Python + zmq
    local r=$1 out
    log "checking $r: gimp-console --version"
    chroot_env "$r" "$BIN_IN_CHROOT" --version >&2 || die "gimp-console-$VER --version failed in $r"
    log "checking $r: python-fu-eval batch (Gimp, Gegl, zmq)"
    out=$(printf '%s\n' \
        'import gi, zmq' \
        'gi.require_version("Gimp", "3.0"); gi.require_version("Gegl", "0.4")' \
        'from gi.repository import Gimp, Gegl' \
        'print("SHARPFU-CHECK", Gimp.version(), zmq.zmq_version(), flush=True)' \
        | CHROOT_TIMEOUT=300 chroot_env "$r" "$BIN_IN_CHROOT" -idf --batch-interpreter=python-fu-eval -b - --quit 2>&1) \
        || { printf '%s\n' "$out" >&2; die "GIMP batch check failed in $r"; }
    printf '%s\n' "$out" | grep -q '^SHARPFU-CHECK ' \
        || { printf '%s\n' "$out" >&2; die "GIMP batch check printed no result in $r"; }
    log "$(printf '%s\n' "$out" | grep '^SHARPFU-CHECK ')"
}

# ---------------------------------------------------------------- host tools
ensure_host_tools() {
    local need=()
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
    command -v mountpoint >/dev/null 2>&1 || need+=(util-linux)
    command -v flock >/dev/null 2>&1 || need+=(util-linux)
    [ ${#need[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${need[*]} and no apt-get on this host to install them"
    log "installing on the host: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "host apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
        || die "host apt-get install ${need[*]} failed"
}

debootstrap_script() {  # host debootstrap may not know newer suite names; sid's script fits both
    local d=/usr/share/debootstrap/scripts
    if [ -e "$d/$SUITE" ]; then echo "$d/$SUITE"; else echo "$d/sid"; fi
}

# ---------------------------------------------------------------- build
build() {
    local start=$SECONDS
    ensure_host_tools
    mkdir -p -- "$(dirname -- "$ROOT")"
    if [ -e "$PARTIAL" ]; then
        log "removing leftover half-built $PARTIAL"
        safe_rm "$PARTIAL"
    fi
    # unmount the partial root again on any failure, leave it for inspection
    trap 'rc=$?; [ $rc -eq 0 ] || { umount_all "$PARTIAL" || true; log "build failed (exit $rc); half-built root left in $PARTIAL"; }' EXIT

    log "debootstrap $SUITE into $PARTIAL (mirror $MIRROR)"
    debootstrap --variant=minbase "$SUITE" "$PARTIAL" "$MIRROR" "$(debootstrap_script)" >&2 \
        || { [ -f "$PARTIAL/debootstrap/debootstrap.log" ] && tail -n 30 "$PARTIAL/debootstrap/debootstrap.log" >&2
             die "debootstrap $SUITE failed"; }

    # name resolution inside; no services started by package scripts
    rm -f -- "$PARTIAL/etc/resolv.conf"
    cp -L /etc/resolv.conf "$PARTIAL/etc/resolv.conf" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' > "$PARTIAL/usr/sbin/policy-rc.d"
    chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"

    mount_all "$PARTIAL"

    log "apt-get install ${PACKAGES[*]} in $PARTIAL"
    chroot_env "$PARTIAL" apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update failed in the chroot"
    chroot_env "$PARTIAL" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >&2 \
        || die "apt-get install ${PACKAGES[*]} failed in the chroot"
    chroot_env "$PARTIAL" apt-get clean >&2 || true

    [ -x "$PARTIAL$BIN_IN_CHROOT" ] || die "$BIN_IN_CHROOT not found after install; suite $SUITE may no longer ship GIMP $VER (found: $(cd "$PARTIAL/usr/bin" && echo gimp-console-*))"
    mkdir -p "$PARTIAL/root/.config/GIMP/$VER/plug-ins"
    full_check "$PARTIAL"

    { echo "suite=$SUITE"; echo "gimp=$VER"; echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      chroot_env "$PARTIAL" dpkg-query -W gimp python3-gi gir1.2-gimp-3.0 python3-zmq python3 2>/dev/null || true
    } > "$PARTIAL/etc/sharpfu-gimp-root"

    # mounts can't be trusted to follow a rename: unmount, rename, mount again
    umount_all "$PARTIAL" || die "could not unmount $PARTIAL before renaming it"
    if [ -e "$ROOT" ]; then
        log "replacing broken root $ROOT"
        safe_rm "$ROOT"
    fi
    mv -T -- "$PARTIAL" "$ROOT"
    trap - EXIT
    mount_all "$ROOT"
    log "built GIMP $VER root in $ROOT in $((SECONDS - start)) s ($(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1))"
}

# ---------------------------------------------------------------- main
case "$ACTION" in
    umount)
        umount_all "$ROOT" || die "could not unmount everything below $ROOT"
        umount_all "$PARTIAL" || die "could not unmount everything below $PARTIAL"
        log "unmounted $ROOT"
        exit 0 ;;
    remove)
        safe_rm "$PARTIAL"
        safe_rm "$ROOT"
        log "removed $ROOT"
        exit 0 ;;
esac

command -v flock >/dev/null 2>&1 || ensure_host_tools
mkdir -p -- "$(dirname -- "$ROOT")"
exec 9>"$ROOT.lock"
flock 9 || die "cannot lock $ROOT.lock"

if [ -d "$ROOT" ]; then
    mount_all "$ROOT"
    if quick_ok "$ROOT"; then
        ensure_packages "$ROOT"
        echo "$ROOT$BIN_IN_CHROOT"
        exit 0
    fi
    log "$ROOT exists but has no working gimp-console-$VER; rebuilding it"
fi
build
quick_ok "$ROOT" || die "gimp-console-$VER does not run in the new root $ROOT"
echo "$ROOT$BIN_IN_CHROOT"
