#!/bin/sh
# Import benchmark (run by hand): `kiln import` of a generated tree of about
# 20,000 files / 1 GiB into a fresh default store (and again into the warm
# store, where everything deduplicates), against `b3sum --no-mmap` hashing the
# same files, alternating; then the import with 200 needles against none.
# Prints medians and the ratios. A cold import writes the whole tree to disk
# durably, so it is also compared with `cp -r` of the tree followed by sync.
# usage: bench/import.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
kiln=$PWD/build/kiln
work=${KILN_BENCH_DIR:-/var/tmp/kiln-bench}
tree=$work/tree
mkdir -p "$work"
[ -d "$tree" ] || /usr/bin/python3 bench/gen_tree.py "$tree"
find "$tree" -type f -print0 | xargs -0 cat >/dev/null   # page cache

needles=$work/needles
/usr/bin/python3 -c '
import random
r = random.Random(7); a = "0123456789abcdfghijklmnpqrsvwxyz"
for _ in range(200): print("".join(r.choice(a) for _ in range(32)))' >"$needles"
needle_args=$(sed 's/^/--needle /' "$needles" | tr '\n' ' ')

t() { /usr/bin/python3 -c 'import subprocess,sys,time
t=time.monotonic(); subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL); print(time.monotonic()-t)' "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/b3" ; : >"$work/cold"; : >"$work/warm"; : >"$work/needles0"; : >"$work/needles200"
: >"$work/cp"
# Cold runs go into fresh stores that are deleted only at the end: ext4's
# inode allocator slows down for a while after mass deletion, which would
# charge one run for the cleanup of the previous one.
rm -rf "$work"/home-* "$work"/copy-*
for i in $(seq "$runs"); do
	t sh -c "find '$tree' -type f -print0 | xargs -0 b3sum --no-mmap --num-threads 1" >>"$work/b3"
	sync
	KILN_HOME=$work/home-$i t "$kiln" import "$tree" >>"$work/cold"
	sync
	t sh -c "cp -r '$tree' '$work/copy-$i' && sync" >>"$work/cp"
	KILN_HOME=$work/home-$i t "$kiln" import "$tree" >>"$work/warm"
	KILN_HOME=$work/home-$i t "$kiln" import "$tree" >>"$work/needles0"
	# shellcheck disable=SC2086
	KILN_HOME=$work/home-$i t "$kiln" import $needle_args "$tree" >>"$work/needles200"
done
rm -rf "$work"/home-* "$work"/copy-*
b3=$(median <"$work/b3"); cold=$(median <"$work/cold"); warm=$(median <"$work/warm")
n0=$(median <"$work/needles0"); n200=$(median <"$work/needles200"); cp=$(median <"$work/cp")
echo "files: $(find "$tree" -type f | wc -l), bytes: $(du -sb "$tree" | cut -f1)"
printf 'b3sum --no-mmap          %.3fs\n' "$b3"
printf 'kiln import (cold store) %.3fs  ratio %.2fx\n' "$cold" "$(awk "BEGIN{print $cold/$b3}")"
printf 'cp -r + sync            %.3fs  cold import / cp = %.2fx\n' "$cp" "$(awk "BEGIN{print $cold/$cp}")"
printf 'kiln import (warm store) %.3fs  ratio %.2fx\n' "$warm" "$(awk "BEGIN{print $warm/$b3}")"
printf 'import, 200 needles      %.3fs  vs none %.3fs: ratio %.2fx\n' "$n200" "$n0" \
	"$(awk "BEGIN{print $n200/$n0}")"
