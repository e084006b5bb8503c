#!/bin/sh
# The daemon's Prometheus endpoint (--metrics-listen): after known traffic
# (a tree imported, a blob read, builds that succeed, fail, come from the
# action cache and wait in the queue) every counter says exactly what
# happened; the page parses as the Prometheus text format; other paths and
# methods are refused; a bad address is one line.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

cg=kiln-test-$$
start_daemon -l "$T/kiln.sock" --metrics-listen 127.0.0.1:0 --action-cache memory:// \
	--blob-service-addr memory:// --directory-service-addr memory:// \
	--build-service-addr "sandbox://$T/bundles?concurrency=1&cgroup=$cg"
mport=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/daemon.$daemon_n.out")
[ -n "$mport" ] || fail "no 'metrics on' line: $(cat "$T/daemon.$daemon_n.out")"
G="grpc+unix://$T/kiln.sock"
S="--blob-service-addr $G --directory-service-addr $G"

# scrape [PATH [METHOD]]: the page (or the status code of a refused request)
cat >"$T/scrape.py" <<'PY'
import sys, urllib.request, urllib.error
port, path = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/metrics"
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path),
                             method=sys.argv[3] if len(sys.argv) > 3 else "GET")
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
PY
# value NAME[{LABELS}]: the sample's value, checking the page's format first
cat >"$T/value.py" <<'PY'
import re, sys
page, want = open(sys.argv[1]).read(), sys.argv[2]
types, values = {}, {}
for line in page.splitlines():
    if line.startswith("# HELP "):
        continue
    m = re.fullmatch(r"# TYPE ([a-z_]+) (counter|gauge|histogram)", line)
    if m:
        types[m[1]] = m[2]
        continue
    m = re.fullmatch(r'([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? ([0-9.]+|\+Inf)', line)
    assert m, "not a Prometheus sample line: %r" % line
    base = re.sub(r"_(bucket|sum|count)$", "", m[1]) if m[1] not in types else m[1]
    assert base in types, "sample %s before its TYPE" % m[1]
    values[m[1] + (m[2] or "")] = m[4]
print(values.get(want, "absent"))
PY
metric() { $PY "$T/scrape.py" "$mport" >"$T/page" && $PY "$T/value.py" "$T/page" "$1"; }
want() { got=$(metric "$1"); [ "$got" = "$2" ] || fail "$1 is $got, want $2"; }

# --- castore traffic ---
mkdir -p "$T/tree/sub" && printf 'hello\n' >"$T/tree/sub/a" && head -c 300000 /dev/urandom >"$T/tree/b"
root=$(kiln import $S "$T/tree" | json node)
want kiln_blobs_put_total 2
want kiln_blob_put_bytes_total 300006
want kiln_directories_put_total 2
digest=$(kiln import --blob-service-addr memory:// --directory-service-addr memory:// "$T/tree/b" |
	json node.file.digest)
kiln cat --blob-service-addr "$G" "b3:$digest" | cmp -s - "$T/tree/b" || fail "cat"
want kiln_blobs_read_total 1
want kiln_blob_read_bytes_total 300000
kiln export $S "$root" "$T/back"
want kiln_directories_sent_total 2
want 'kiln_calls_total{method="/tvix.castore.v1.BlobService/Put",code="OK"}' 2
want kiln_calls_open 0

# --- builds: one that succeeds, its cache hit, one that fails, two queued ---
bbnode=$(kiln import $S /bin/busybox | json node | sed 's/"file": {/"file": {"name": "YnVzeWJveA==", /')
request() { # request FILE SCRIPT
	script=$(printf '%s' "$2" | $PY -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
	cat >"$1" <<JSON
{"inputs": [$bbnode], "commandArgs": ["/nix/store/busybox", "sh", "-c", $script],
 "workingDir": "build", "scratchPaths": ["build", "nix/store"], "inputsDir": "nix/store",
 "outputs": ["nix/store/x-out"],
 "environmentVars": [{"key": "PATH", "value": "L2Jpbg=="}],
 "constraints": {"system": "x86_64-linux"}}
JSON
}
request "$T/ok.json" "echo ok > /nix/store/x-out"
request "$T/bad.json" "exit 3"
kiln build --build-service-addr "$G" "$T/ok.json" >/dev/null
kiln build --build-service-addr "$G" "$T/ok.json" >/dev/null
expect_fail "status 3" kiln build --build-service-addr "$G" "$T/bad.json"
want 'kiln_builds_total{outcome="ok"}' 2
want 'kiln_builds_total{outcome="failed"}' 1
want kiln_action_cache_hits_total 1
want kiln_build_duration_seconds_count 2
# concurrency 1: while one sleeps, the next waits in the queue
request "$T/s1.json" "/nix/store/busybox sleep 3; echo 1 > /nix/store/x-out"
request "$T/s2.json" "echo 2 > /nix/store/x-out"
kiln build --build-service-addr "$G" "$T/s1.json" >/dev/null &
p1=$!
sleep 1
kiln build --build-service-addr "$G" "$T/s2.json" >/dev/null &
p2=$!
i=0
until [ "$(metric kiln_build_queue_length)" = 1 ]; do
	i=$((i + 1)); [ $i -lt 40 ] || fail "the queue never held the second build"
	sleep 0.05
done
want kiln_calls_open 2
wait $p1 && wait $p2 || fail "the queued builds failed"
want kiln_build_queue_length 0
want kiln_build_queue_seconds_count 4
want 'kiln_build_queue_seconds_bucket{le="+Inf"}' 4
want 'kiln_build_queue_seconds_bucket{le="1"}' 3
want 'kiln_builds_total{outcome="ok"}' 4
fuse=$(metric kiln_fuse_reads_total)
[ "$fuse" != absent ] && [ "$fuse" -gt 0 ] || fail "kiln_fuse_reads_total is $fuse after builds read busybox"

# --- refusals ---
[ "$($PY "$T/scrape.py" "$mport" /nope)" = 404 ] || fail "/nope was not 404"
[ "$($PY "$T/scrape.py" "$mport" /metrics POST)" = 405 ] || fail "POST was not 405"
stop_daemon "$DAEMON_PID"
expect_fail "invalid metrics address 'nope'" kiln daemon -l "$T/k2.sock" --metrics-listen nope
[ "$(wc -l <"$T/.stderr")" = 1 ] || fail "more than one line: $(cat "$T/.stderr")"
echo ok
