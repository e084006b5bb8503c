#!/bin/sh
# find + read of every file of a generated tree (20,000 files in 200
# directories, mostly small) through `kiln mount` against the original tree
# (page cache warm). Each run mounts afresh: "first" walks a cold mount
# (every Directory fetched, every blob opened), "again" the same mount once
# more (kernel caches warm).
#
#   bench/fuse_tree.sh [FILES=20000] [RUNS=5] [kiln mount options...]
. "$(dirname "$0")/fuse_lib.sh"
files=${1:-20000}
runs=${2:-5}
[ $# -ge 2 ] && shift 2 || shift $#

$PY - "$W/tree" "$files" <<'PYEOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 200:03d}", f"s{i % 7}")
    os.makedirs(d, exist_ok=True)
    size = 65536 if i % 50 == 0 else (i * 7919) % 8192
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(os.urandom(size))
PYEOF
du -sh "$W/tree" | awk '{ print "tree: " $1 }'
import_timed "$W/tree"
node=$(cat "$W/node.json")
walk() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

: >"$W/o"; : >"$W/m1"; : >"$W/m2"
walk "$W/tree"
for r in $(seq "$runs"); do
	timed walk "$W/tree" >>"$W/o"
	mount_start "$@" "$M" "t=$node"
	timed walk "$M/t" >>"$W/m1"
	timed walk "$M/t" >>"$W/m2"
	mount_stop
done
o=$(median <"$W/o"); m1=$(median <"$W/m1"); m2=$(median <"$W/m2")
printf '%-28s %10s\n' "median of $runs runs" "ms"
printf '%-28s %10s\n' "original tree" "$o"
printf '%-28s %10s\n' "kiln mount, first walk" "$m1"
printf '%-28s %10s\n' "kiln mount, again" "$m2"
awk -v o="$o" -v m1="$m1" -v m2="$m2" 'BEGIN {
	printf "ratio (original time / mount time): first %.2fx, again %.2fx\n", o / m1, o / m2 }'
