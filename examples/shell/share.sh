#!/bin/sh
# SPDX-License-Identifier: MIT
# share.sh — two processes share a capshm region using the capshm CLI and dd.
#
#   terminal 1:  ./share.sh create          prints the region's name, waits for a reply
#   terminal 2:  ./share.sh attach          reads NAME from stdin (or
#                                          $CAPSHM_NAME), reads the message,
#                                          writes a reply
#
# The name is the key to the region: it is passed on stdin or in the
# environment, never as an argument (every uid can read /proc/PID/cmdline).
# For the same reason the region is read with dd <PATH, not dd if=PATH.
#
# The mount is $CAPSHM_DIR, else /run/capshm.  Layout (shared by every
# example): offset 0 the creator's message, offset 2048 the reply, offset
# 4095 set to 1 once the reply is complete.
set -eu
dir=${CAPSHM_DIR:-/run/capshm}

# read_at PATH OFFSET: the NUL-terminated text at OFFSET (0 or 2048).
read_at() { dd bs=2048 skip=$(($2 / 2048)) count=1 <"$1" 2>/dev/null | tr '\0' '\n' | head -n 1; }
# write_at PATH OFFSET: write stdin at OFFSET without truncating the region.
# (The region is dd's stdout, opened by the shell: no path on dd's command line.)
write_at() { dd bs=1 seek="$2" conv=notrunc 2>/dev/null 1<>"$1"; }

case "${1:-}" in
create)
    # capshm new prints the region's path.  Hold it open on fd 3 right away:
    # a region nobody holds is destroyed after the mount's linger time.
    path=$(capshm new --size 4096)
    exec 3<"$path"
    printf 'hello from sh, pid %s\0' $$ | write_at "$path" 0
    echo "${path##*/}"              # the name is the capability: pass it on

    i=0
    while [ "$(dd bs=1 skip=4095 count=1 <"$path" 2>/dev/null | od -An -tu1 | tr -d ' ')" != 1 ]; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "share.sh: no reply within 60 s" >&2; exit 1; }
        sleep 0.1
    done
    echo "reply: $(read_at "$path" 2048)"
    echo "$path" | capshm rm -      # done: remove the name now (path on stdin)
    ;;
attach)
    name=${CAPSHM_NAME:-}
    [ -n "$name" ] || IFS= read -r name || true
    [ -n "$name" ] || { echo "share.sh: no NAME on stdin or in CAPSHM_NAME" >&2; exit 2; }
    path=$dir/$name
    echo "message: $(read_at "$path" 0)"
    printf 'thanks from sh, pid %s\0' $$ | write_at "$path" 2048
    printf '\001' | write_at "$path" 4095   # last: the reply is complete
    ;;
*)
    echo "usage: share.sh create | share.sh attach  (NAME on stdin or in CAPSHM_NAME)" >&2
    exit 2
    ;;
esac
