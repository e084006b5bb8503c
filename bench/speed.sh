#!/bin/bash
# bench/speed.sh: kiln's hot paths against the tool a user would otherwise use,
# side by side on this machine, one row per path (what `make bench` prints).
# Runs alternate kiln and its peer; each row is the median of RUNS paired runs.
# Ratios are throughput ratios (>= 1: kiln faster) except where the row says
# "time" (<= 1: kiln faster). Run by hand as root after `ninja -C build`; the
# figures are only as quiet as the machine.
#
# usage: bench/speed.sh [RUNS]   (default 3)
# env:   BENCH_DIR  scratch space on a real disk (default /var/tmp/kiln-bench)
#        BENCH_SETTLE  seconds each import round waits after deletions (61)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
runs=${1:-3}
kiln=${KILN_BIN:-$root/build/kiln}
dir=${BENCH_DIR:-/var/tmp/kiln-bench}
for t in b3sum socat casync; do
	command -v $t >/dev/null || { echo "speed.sh: needs $t (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
[ -x "$kiln" ] || { echo "speed.sh: build kiln first (ninja -C build)" >&2; exit 1; }
mkdir -p "$dir"
work=$(mktemp -d "$dir/speed.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
# seconds one run of the command takes, its output discarded
secs() { local t0; t0=$(now); "$@" >/dev/null; echo "$(( $(now) - t0 ))" | awk '{ printf "%.6f\n", $1 / 1e9 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# paired FILE_A FILE_B CMD_A -- CMD_B: RUNS alternating timings appended to the files
paired() {
	local a=$1 b=$2; shift 2
	local ca=() cb=() seen=false
	for x in "$@"; do
		if ! $seen && [ "$x" = -- ]; then seen=true; continue; fi
		if $seen; then cb+=("$x"); else ca+=("$x"); fi
	done
	for _ in $(seq "$runs"); do
		secs "${ca[@]}" >>"$a"
		secs "${cb[@]}" >>"$b"
	done
}
row() { printf '%-52s %-36s %8s  %s\n' "$1" "$2" "$3" "$4"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

echo "kiln speed, $(nproc) CPUs, median of $runs paired runs"
row "path" "peer" "ratio" "goal"

# --- hashing: 1 GiB of random bytes in the page cache ---
big=$dir/random-1024MiB
[ -f "$big" ] || { head -c 1073741824 /dev/urandom >"$big.tmp" && mv "$big.tmp" "$big"; }
cat "$big" >/dev/null
[ "$("$kiln" hash "$big" | cut -d' ' -f1)" = "$(b3sum "$big" | cut -d' ' -f1)" ] ||
	{ echo "speed.sh: kiln hash and b3sum disagree" >&2; exit 1; }
paired "$work/k1" "$work/b1" "$kiln" hash --threads 1 "$big" -- b3sum --no-mmap --num-threads 1 "$big"
row "kiln hash 1 GiB, one thread (throughput)" "b3sum --no-mmap --num-threads 1" \
	"$(ratio "$(median <"$work/b1")" "$(median <"$work/k1")")" ">= 1.0x"
paired "$work/k2" "$work/b2" "$kiln" hash "$big" -- b3sum "$big"
row "kiln hash 1 GiB, default (throughput)" "b3sum (threads, mmap)" \
	"$(ratio "$(median <"$work/b2")" "$(median <"$work/k2")")" ">= 1.0x"
: >"$work/empty"
hundred() { for _ in $(seq 100); do "$@" >/dev/null; done; }
paired "$work/k3" "$work/b3" hundred "$kiln" hash "$work/empty" -- hundred b3sum "$work/empty"
row "kiln hash of an empty file (start-up time)" "b3sum" \
	"$(ratio "$(median <"$work/k3")" "$(median <"$work/b3")")" "<= 1.5x"

# --- gRPC blobs: bench/grpc_blob.sh prints put/raw-up and read/raw-down ---
g=$("$here/grpc_blob.sh" "$runs" | grep '^ratios:')
put=$(sed -E 's|.*put/raw-up ([0-9.]+)x.*|\1|' <<<"$g")
read=$(sed -E 's|.*read/raw-down ([0-9.]+)x.*|\1|' <<<"$g")
keep=$(sed -E 's|.*put/raw-keep ([0-9.]+)x.*|\1|' <<<"$g")
row "gRPC blob Put 256 MiB, unix socket (throughput)" "socat over a unix socket" "${put}x" ">= 0.7x"
row "  the same, for context" "socat into a kept tmpfs file" "${keep}x" ""
row "gRPC blob Read 256 MiB, kiln cat (throughput)" "socat over a unix socket" "${read}x" ">= 0.9x"

# --- FUSE: bench/fuse_read.sh, a 512 MiB file, a fresh mount per run ---
f=$("$here/fuse_read.sh" 512 "$runs" | grep '^ratio')
first=$(sed -E 's|.*first read ([0-9.]+)x.*|\1|' <<<"$f")
again=$(sed -E 's|.*re-read ([0-9.]+)x.*|\1|' <<<"$f")
row "FUSE first read 512 MiB, fresh mount (throughput)" "cat from the page cache" "${first}x" ">= 0.6x"
row "FUSE re-read (throughput)" "cat from the page cache" "${again}x" ">= 0.9x"

# --- cold import of a real tree, written durably ---
src=(/usr/include /usr/lib/x86_64-linux-gnu)
find "${src[@]}" -type f -print0 2>/dev/null | xargs -0 cat >/dev/null 2>&1 || :
kiln_import() {
	KILN_HOME=$work/home "$kiln" import "${src[@]}" >/dev/null && sync
}
cp_sync() {
	mkdir "$work/cp" && cp -a "${src[@]}" "$work/cp/" && sync
}
casync_make() {
	mkdir "$work/casync" &&
		casync make --store="$work/casync/store" "$work/casync/tree.caidx" "$work/tree" >/dev/null && sync
}
# casync takes one directory: give it both trees under one, as bind mounts.
mkdir -p "$work/tree/include" "$work/tree/lib"
mount --bind /usr/include "$work/tree/include"
mount --bind /usr/lib/x86_64-linux-gnu "$work/tree/lib"
trap 'umount "$work/tree/include" "$work/tree/lib" 2>/dev/null; rm -rf "$work"' EXIT
# Each round starts a minute after the last deletion: ext4 without a journal
# (the root file system here) will not reuse an inode freed within the last
# 60 s and scans past every such inode, so a run right after the previous
# one's rm -rf paid for it (kiln's system time doubled). Within a round
# nothing is deleted; the three outputs go at its end.
sync
for _ in $(seq "$runs"); do
	sleep "${BENCH_SETTLE:-61}"
	secs kiln_import >>"$work/ki"
	secs cp_sync >>"$work/cp_t"
	secs casync_make >>"$work/ca"
	rm -rf "$work/home" "$work/cp" "$work/casync"; sync
done
ki=$(median <"$work/ki")
row "cold kiln import, /usr/include + /usr/lib/x86_64-linux-gnu (time)" "cp -a + sync" \
	"$(ratio "$ki" "$(median <"$work/cp_t")")" "<= 0.8x"
row "the same (time)" "casync make" "$(ratio "$ki" "$(median <"$work/ca")")" "<= 0.5x"
