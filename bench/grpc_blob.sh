#!/bin/sh
# gRPC blob benchmark (run by hand, never from tests): Put then Read of one
# blob (256 MiB by default) through `kiln daemon` over a unix socket, with
# `kiln import` and `kiln cat` as clients, against a raw copy of the same
# bytes through a unix socket with socat (128 KiB blocks), in both
# directions, alternating. raw-keep is the upload again into a tmpfs file
# kept until the end, a peer that holds the bytes in memory as a memory://
# store must (fresh memory is dear on our VMs). Prints each round, the
# medians and the ratios.
#
# usage: bench/grpc_blob.sh [ROUNDS]   env: MB (blob size), BLOB_URL (the
# daemon's blob store, default memory://), KILN_BIN.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
mb=${MB:-256}
kiln=${KILN_BIN:-$PWD/build/kiln}
blob_url=${BLOB_URL:-memory://}
PY=/usr/bin/python3
command -v socat >/dev/null || { echo "grpc_blob.sh: needs socat (scripts/install-deps.sh --bench)" >&2; exit 1; }

work=$(mktemp -d /tmp/kiln-grpc-bench.XXXXXX)
keep=$(mktemp -d /dev/shm/kiln-grpc-bench.XXXXXX)
dpid=""
spid=""
cleanup() {
	[ -z "$spid" ] || kill "$spid" 2>/dev/null || true
	[ -z "$dpid" ] || kill -TERM "$dpid" 2>/dev/null || true
	[ -z "$dpid" ] || wait "$dpid" 2>/dev/null || true
	rm -rf "$work" "$keep"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

blob=$work/blob
head -c $((mb * 1024 * 1024)) /dev/urandom >"$blob"
bytes=$(stat -c %s "$blob")
cat "$blob" >/dev/null

now() { date +%s.%N; }
mbps() { $PY -c 'import sys; print("%.0f" % (int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])) / 1e6))' "$bytes" "$1" "$2"; }
wait_for() { i=0; until [ -e "$1" ]; do i=$((i + 1)); [ $i -lt 400 ] || { echo "no $1" >&2; exit 1; }; sleep 0.01; done; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

"$kiln" daemon -l "$work/kiln.sock" --blob-service-addr "$blob_url" \
	--directory-service-addr memory:// >"$work/daemon.out" 2>"$work/daemon.err" &
dpid=$!
i=0
until grep -q '^listening on' "$work/daemon.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 500 ] || { cat "$work/daemon.err" >&2; exit 1; }
	sleep 0.02
done
url="grpc+unix://$work/kiln.sock"

raw_up() { # client sends the file, the server discards it
	rm -f "$work/raw.sock"
	socat -u -b 131072 UNIX-LISTEN:"$work/raw.sock" OPEN:/dev/null,wronly & spid=$!
	wait_for "$work/raw.sock"
	t0=$(now)
	socat -u -b 131072 OPEN:"$blob",rdonly UNIX-CONNECT:"$work/raw.sock"
	wait "$spid"; spid=""
	mbps "$t0" "$(now)"
}
raw_keep() { # as raw_up, but the server keeps the bytes in tmpfs, as a memory store does
	rm -f "$work/raw.sock"
	socat -u -b 131072 UNIX-LISTEN:"$work/raw.sock" OPEN:"$keep/$1",wronly,creat & spid=$!
	wait_for "$work/raw.sock"
	t0=$(now)
	socat -u -b 131072 OPEN:"$blob",rdonly UNIX-CONNECT:"$work/raw.sock"
	wait "$spid"; spid=""
	mbps "$t0" "$(now)"
}
raw_down() { # the server sends the file, the client discards it
	rm -f "$work/raw.sock"
	socat -u -b 131072 OPEN:"$blob",rdonly UNIX-LISTEN:"$work/raw.sock" & spid=$!
	wait_for "$work/raw.sock"
	t0=$(now)
	socat -u -b 131072 UNIX-CONNECT:"$work/raw.sock" OPEN:/dev/null,wronly
	wait "$spid"; spid=""
	mbps "$t0" "$(now)"
}
kiln_put() {
	t0=$(now)
	"$kiln" import --blob-service-addr "$url" --directory-service-addr "$url" "$blob" >"$work/put.json"
	mbps "$t0" "$(now)"
}
kiln_read() {
	d=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"]["file"]["digest"])' "$work/put.json")
	t0=$(now)
	"$kiln" cat --blob-service-addr "$url" "b3:$d" >/dev/null
	mbps "$t0" "$(now)"
}

echo "blob: $mb MiB, daemon blob store: $blob_url, $rounds rounds (MB/s)"
printf '%-6s %10s %10s %10s %10s %10s\n' round raw-up raw-keep kiln-put raw-down kiln-read
for r in $(seq "$rounds"); do
	# a new blob each round, so every Put really stores (the store dedups)
	head -c 16 /dev/urandom | dd of="$blob" conv=notrunc status=none
	a=$(raw_up); k=$(raw_keep "$r"); b=$(kiln_put); c=$(raw_down); d=$(kiln_read)
	echo "$a" >>"$work/raw_up"; echo "$k" >>"$work/raw_keep"; echo "$b" >>"$work/put"
	echo "$c" >>"$work/raw_down"; echo "$d" >>"$work/read"
	printf '%-6s %10s %10s %10s %10s %10s\n' "$r" "$a" "$k" "$b" "$c" "$d"
done
ru=$(median <"$work/raw_up"); rk=$(median <"$work/raw_keep"); p=$(median <"$work/put")
rd=$(median <"$work/raw_down"); g=$(median <"$work/read")
printf '%-6s %10s %10s %10s %10s %10s\n' median "$ru" "$rk" "$p" "$rd" "$g"
$PY -c 'import sys; ru,rk,p,rd,g=map(float,sys.argv[1:]); print("ratios: put/raw-up %.2fx, put/raw-keep %.2fx, read/raw-down %.2fx" % (p/ru, p/rk, g/rd))' "$ru" "$rk" "$p" "$rd" "$g"
