# SPDX-License-Identifier: MIT
# Shared by the autopkgtests: mount the installed capshmfs on a fresh
# directory and undo everything on exit.  Sets $mnt, $work.
set -eu

[ -c /dev/fuse ] || { echo "no /dev/fuse on this test machine" >&2; exit 1; }

work=$(mktemp -d)
mnt=$(mktemp -d)
chmod 755 "$mnt"

daemon_pid() {
    # The daemon is the only process with this (unique) mountpoint in its
    # command line.
    ps -eo pid=,args= | awk -v m="$mnt" '$2 ~ /capshmfs$/ && index($0, " " m " ") { print $1 }'
}

cleanup() {
    status=$?
    # A test's own undo steps first (a command line): e.g. end the processes
    # it started, so that nothing holds the mount.
    [ -z "${extra_cleanup:-}" ] || eval "$extra_cleanup" || true
    if grep -q " $mnt " /proc/self/mountinfo; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt"
    fi
    pid=$(daemon_pid)
    [ -z "$pid" ] || kill -KILL $pid 2>/dev/null || true
    if [ $status -ne 0 ] && [ -f "$work/daemon.log" ]; then
        echo "--- capshmfs log:"; cat "$work/daemon.log"
    fi
    rmdir "$mnt" 2>/dev/null || true
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

mount_capshm() {
    # mount_capshm DATAPATH [OPTIONS]: mount with datapath=DATAPATH and check
    # that the mount has it.  capshmfs returns once the mount answers (it
    # daemonizes).  Its start-up messages go to the log, so that stderr
    # stays clean.
    # DATAPATH "default": the options of capshm.service, no datapath option;
    # the mount must then have passthrough.
    if [ "$1" = default ]; then
        opts="allow_other,linger=1" want=passthrough
    else
        opts="datapath=$1,linger=1" want=$1
    fi
    /usr/bin/capshmfs capshm "$mnt" -o "$opts${2:+,$2}" >"$work/daemon.log" 2>&1
    grep -q " $mnt .* - fuse.capshmfs capshm " /proc/self/mountinfo
    stats=$(cat "$mnt/.stats")
    echo "mounted $mnt ($opts): $stats"
    case $stats in
    *"\"datapath\":\"$want\""*) ;;
    *) echo "the mount does not have datapath $want"; exit 1 ;;
    esac
    # The package is built with FUSE over io_uring: where the kernel has it
    # switched on (Linux >= 6.14, fuse.enable_uring), the daemon takes it.
    if [ "$(cat /sys/module/fuse/parameters/enable_uring 2>/dev/null)" = Y ]; then
        case $stats in
        *'"transport":"io_uring"'*) ;;
        *) echo "fuse.enable_uring is on but the daemon did not take io_uring"; exit 1 ;;
        esac
    else
        echo "fuse.enable_uring is off or missing here: transport not checked"
    fi
}

wait_regions() {
    # wait_regions N: until .stats says N regions (at most 10 s).
    i=0
    until grep -q "\"regions\":$1," "$mnt/.stats"; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "regions did not reach $1: $(cat "$mnt/.stats")"
            exit 1
        fi
        sleep 0.1
    done
}

unmount_capshm() {
    pid=$(daemon_pid)
    [ -n "$pid" ]
    umount "$mnt"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "capshmfs (pid $pid) still running 10 s after umount"
            exit 1
        fi
        sleep 0.1
    done
    echo "unmounted; capshmfs exited"
}
