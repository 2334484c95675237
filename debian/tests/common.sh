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
    # capshmfs returns once the mount answers (it daemonizes).  Its start-up
    # messages go to the log, so that stderr stays clean.
    /usr/bin/capshmfs capshm "$mnt" -o "linger=1${1:+,$1}" >"$work/daemon.log" 2>&1
    grep -q " $mnt .* - fuse.capshmfs capshm " /proc/self/mountinfo
    echo "mounted $mnt: $(cat "$mnt/.stats")"
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
