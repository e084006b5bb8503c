#!/bin/sh
# Sequential read of one large file through `kiln mount` against reading the
# original from the page cache. Each run mounts afresh, so "first" is a cold
# read through kiln (object store → decompress → verify → FUSE) and "again"
# and "third" are re-reads, served from the page cache thanks to keep_cache. `kiln cat`
# of the same blob to /dev/null shows what the store alone costs.
#
#   bench/fuse_read.sh [SIZE_MIB=512] [RUNS=5] [kiln mount options...]
#
# Run by hand as root after `ninja -C build`; uses the default embedded store
# in a scratch KILN_HOME. Compare ratios, not absolute figures: the machines
# are shared and noisy.
. "$(dirname "$0")/fuse_lib.sh"
size=${1:-512}
runs=${2:-5}
[ $# -ge 2 ] && shift 2 || shift $#

head -c $((size * 1024 * 1024)) /dev/urandom >"$W/file"
import_timed "$W/file"
node=$(cat "$W/node.json")
rd() { dd if="$1" of=/dev/null bs=1M status=none; }

: >"$W/o1"; : >"$W/o2"; : >"$W/m1"; : >"$W/m2"; : >"$W/m3"; : >"$W/c"
digest=$($PY -c 'import json,sys; print(json.load(sys.stdin)["file"]["digest"])' <"$W/node.json")
cat_blob() { "$KILN" cat "b3:$digest" >/dev/null; }
for r in $(seq "$runs"); do
	timed rd "$W/file" >>"$W/o1"
	timed rd "$W/file" >>"$W/o2"
	timed cat_blob >>"$W/c"
	mount_start "$@" "$M" "f=$node"
	timed rd "$M/f" >>"$W/m1"
	timed rd "$M/f" >>"$W/m2"
	timed rd "$M/f" >>"$W/m3"
	cmp -s "$W/file" "$M/f" || { echo "contents differ" >&2; exit 1; }
	mount_stop
done

mbps() { awk -v s="$size" -v ms="$1" 'BEGIN { printf "%.0f", s * 1048576 / 1e6 / (ms / 1000) }'; }
o1=$(median <"$W/o1"); o2=$(median <"$W/o2"); m1=$(median <"$W/m1"); m2=$(median <"$W/m2")
c=$(median <"$W/c"); m3=$(median <"$W/m3")
printf '%-28s %10s %10s\n' "median of $runs runs" "ms" "MB/s"
printf '%-28s %10s %10s\n' "original, first read" "$o1" "$(mbps "$o1")"
printf '%-28s %10s %10s\n' "original, re-read" "$o2" "$(mbps "$o2")"
printf '%-28s %10s %10s\n' "kiln cat (store, no FUSE)" "$c" "$(mbps "$c")"
printf '%-28s %10s %10s\n' "kiln mount, first read" "$m1" "$(mbps "$m1")"
printf '%-28s %10s %10s\n' "kiln mount, re-read" "$m2" "$(mbps "$m2")"
printf '%-28s %10s %10s\n' "kiln mount, third read" "$m3" "$(mbps "$m3")"
awk -v o1="$o1" -v o2="$o2" -v m1="$m1" -v m2="$m2" -v m3="$m3" 'BEGIN {
	printf "ratio (mount/original throughput): first read %.2fx, re-read %.2fx, third read %.2fx\n",
		o1 / m1, o2 / m2, o2 / m3 }'
