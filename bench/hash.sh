#!/bin/sh
# bench/hash.sh: single-threaded BLAKE3 throughput of `kiln hash --threads 1` against the
# reference `b3sum --no-mmap --num-threads 1`, then each in its default mode (kiln: threads,
# pread into per-thread buffers; b3sum: threads, mmap), on one large file of random bytes that sits in the page
# cache. Both read() the file through a reused buffer and hash on one core, so this measures
# the hashing kernels plus the copy out of the page cache: what hashing a blob costs kiln.
# Runs alternate (kiln, b3sum, kiln, ...) so drift on a noisy machine hits both alike; the
# report is the median MB/s (10^6 bytes/s, wall clock) of each and the ratio kiln/b3sum
# (>= 1.0: kiln at least as fast), and the same for the best run of each: on a shared
# machine interference only ever slows a run down, so the best runs are the least disturbed.
#
# usage: bench/hash.sh [--levels] [RUNS]   (RUNS default 5; run by hand, never from tests)
#        --levels  also measure kiln at each kernel level (KILN_BLAKE3_SIMD=...)
# env:   KILN_BIN   kiln binary (default: build/kiln beside this script)
#        BENCH_DIR  scratch directory for the input (default /var/tmp/kiln-bench; not /tmp,
#                   which may be a tmpfs holding 1 GiB of RAM besides the page cache)
#        BENCH_MIB  input size in MiB (default 1024)
#        KILN_BLAKE3_SIMD  passed through to the main comparison
set -eu

levels=false
if [ "${1:-}" = --levels ]; then
	levels=true
	shift
fi
runs=${1:-5}
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN_BIN:-$here/../build/kiln}
dir=${BENCH_DIR:-/var/tmp/kiln-bench}
mib=${BENCH_MIB:-1024}
file=$dir/random-${mib}MiB
b3sum=$(command -v b3sum) || {
	echo "bench/hash.sh: b3sum not found (apt-get install b3sum)" >&2
	exit 1
}
[ -x "$kiln" ] || {
	echo "bench/hash.sh: $kiln not built (ninja -C build)" >&2
	exit 1
}

mkdir -p "$dir"
if [ ! -f "$file" ]; then
	echo "creating $file" >&2
	head -c "$((mib * 1024 * 1024))" /dev/urandom >"$file.tmp"
	mv "$file.tmp" "$file"
fi
cat "$file" >/dev/null # warm the page cache

# Both must agree before their speed means anything.
k=$("$kiln" hash "$file" | cut -d' ' -f1)
b=$("$b3sum" --no-mmap --num-threads 1 "$file" | cut -d' ' -f1)
k1=$("$kiln" hash --threads 1 "$file" | cut -d' ' -f1)
[ "$k" = "$b" ] && [ "$k1" = "$b" ] || {
	echo "bench/hash.sh: digests differ: kiln $k, b3sum $b" >&2
	exit 1
}

bytes=$(stat -c %s "$file")
# MB/s of one run of the command.
rate() {
	t0=$(date +%s%N)
	"$@" >/dev/null
	t1=$(date +%s%N)
	echo $((bytes * 1000 / (t1 - t0)))
}
best() {
	tr ' ' '\n' | grep . | sort -n | tail -1
}
median() {
	tr ' ' '\n' | grep . | sort -n |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# compare KILN_LABEL B3SUM_LABEL RATIO_LABEL: run_kiln and run_b3sum alternately, RUNS times
# each; prints the medians and the best runs of both and their ratios.
compare() {
	kiln_rates=""
	b3_rates=""
	i=0
	while [ "$i" -lt "$runs" ]; do
		kiln_rates="$kiln_rates $(rate run_kiln)"
		b3_rates="$b3_rates $(rate run_b3sum)"
		i=$((i + 1))
	done
	km=$(echo "$kiln_rates" | median)
	bm=$(echo "$b3_rates" | median)
	kb=$(echo "$kiln_rates" | best)
	bb=$(echo "$b3_rates" | best)
	echo "$1: median $km MB/s, best $kb  (runs:$kiln_rates)"
	echo "$2: median $bm MB/s, best $bb  (runs:$b3_rates)"
	awk -v km="$km" -v bm="$bm" -v kb="$kb" -v bb="$bb" -v label="$3" \
		'BEGIN { printf "%s: %.3f (medians), %.3f (best runs)\n", label, km / bm, kb / bb }'
}

echo "input: $file ($bytes bytes, page cache warm), $runs runs each"
run_kiln() { "$kiln" hash --threads 1 "$file"; }
run_b3sum() { "$b3sum" --no-mmap --num-threads 1 "$file"; }
compare "kiln hash --threads 1 (KILN_BLAKE3_SIMD=${KILN_BLAKE3_SIMD:-unset: best})" \
	"b3sum --no-mmap --num-threads 1" "ratio kiln/b3sum, single thread"

# Default modes: kiln hash (threads, pread) against b3sum (threads, mmap), alternating.
run_kiln() { "$kiln" hash "$file"; }
run_b3sum() { "$b3sum" "$file"; }
compare "kiln hash (default: threads)" "b3sum (default: threads, mmap)" \
	"kiln hash 1 GiB, default vs b3sum (threads, mmap)"

if $levels; then
	# A level this CPU lacks falls back to the best: its line then repeats that one.
	for level in portable sse41 avx2 avx512; do
		rates=""
		i=0
		while [ "$i" -lt "$runs" ]; do
			rates="$rates $(KILN_BLAKE3_SIMD=$level rate "$kiln" hash --threads 1 "$file")"
			i=$((i + 1))
		done
		echo "kiln hash, KILN_BLAKE3_SIMD=$level: median $(echo "$rates" | median) MB/s, best $(echo "$rates" | best)  (runs:$rates)"
	done
fi
