# Shared helpers for the FUSE benchmarks (sourced). Sets up a scratch
# directory $W with its own KILN_HOME (the default embedded store) and
# removes it, and any mount made here, on exit.
set -eu
KILN=${KILN_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/kiln}
[ -x "$KILN" ] || { echo "build kiln first (ninja -C build) or set KILN_BIN" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (FUSE)" >&2; exit 1; }
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-bench.XXXXXX")
export KILN_HOME="$W/home"
unset BLOB_SERVICE_ADDR DIRECTORY_SERVICE_ADDR
M="$W/mnt"
mkdir "$M"
mpid=""
bench_cleanup() {
	[ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null || :
	umount -l "$M" 2>/dev/null || :
	rm -rf "$W"
}
trap bench_cleanup EXIT
trap 'exit 1' INT TERM HUP

# mount_start ARGS...: kiln mount in the background, back when ready
mount_start() {
	"$KILN" mount "$@" >"$W/mount.log" 2>&1 &
	mpid=$!
	i=0
	until grep -q "mounted at" "$W/mount.log"; do
		kill -0 "$mpid" 2>/dev/null || { cat "$W/mount.log" >&2; exit 1; }
		i=$((i + 1)); [ $i -lt 200 ] || { echo "mount not ready" >&2; exit 1; }
		sleep 0.1
	done
}
mount_stop() {
	kill -TERM "$mpid"
	wait "$mpid" || :
	mpid=""
}
# import_timed PATH: imports PATH, prints the time taken; $W/node.json gets its node
import_timed() {
	t0=$(date +%s%N)
	"$KILN" import "$1" >"$W/import.json"
	t1=$(date +%s%N)
	$PY -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["node"]))' \
		<"$W/import.json" >"$W/node.json"
	echo "import of $1: $(((t1 - t0) / 1000000)) ms"
}
# timed CMD...: runs CMD, prints its wall time in milliseconds
timed() {
	t0=$(date +%s%N)
	"$@"
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
