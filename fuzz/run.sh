#!/bin/sh
# fuzz/run.sh BUILD SECONDS TARGET...: runs each libFuzzer target for SECONDS
# on its seeds (fuzz/seeds.py) and its corpus from earlier runs, prints one
# line per target (runs, coverage, corpus size) and fails on the first crash,
# leaving the input in BUILD/crashes/. FUZZ_TIMEOUT (seconds, default 10) is
# libFuzzer's per-input limit in wall-clock time: raise it for long runs on a
# shared machine, where a starved process can miss it with no slow input.
set -eu
build=$1 secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/crashes" "$build/corpus"
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
/usr/bin/python3 "$here/seeds.py" "$seeds"
for t in "$@"; do
	mkdir -p "$build/corpus/$t"
	log=$build/fuzz_$t.log
	if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		"$build/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=65536 -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 \
		-artifact_prefix="$build/crashes/$t-" "$build/corpus/$t" "$seeds/$t" >"$log" 2>&1; then
		grep -aE "ERROR|runtime error|property|not one line|SUMMARY" "$log" | head -5 >&2
		echo "fuzz_$t: FAILED (log: $log, input: $(ls -t "$build/crashes/$t-"* 2>/dev/null | head -1))" >&2
		exit 1
	fi
	stats=$(grep -aE '^#[0-9]+.*DONE' "$log" | tail -1)
	echo "fuzz_$t: ok, $(echo "$stats" | sed -E 's/^#([0-9]+).*cov: ([0-9]+).*corp: ([0-9]+).*exec\/s: ([0-9]+).*/\1 runs, \4 exec\/s, coverage \2, corpus \3/')"
done
