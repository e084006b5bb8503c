#!/bin/sh
# Live build events (kiln.build.v1.BuildEvents) through the daemon, driven by
# Python grpcio (build_events.py), and kiln build/run --json printing them.
. "$(dirname "$0")/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

cg=kiln-test-$$
bundles=$T/bundles
start_daemon -l "$T/kiln.sock" --blob-service-addr memory:// --directory-service-addr memory:// \
	--action-cache memory:// --build-service-addr "sandbox://$bundles?concurrency=1&cgroup=$cg"
timeout 300 $PY "$KILN_SOURCE_ROOT/tests/integration/build_events.py" "unix:$T/kiln.sock" \
	"$KILN_SOURCE_ROOT/proto" "$T/py" "$bundles" "$KILN_BIN" ||
	{ tail -20 "$DAEMON_ERR" >&2; fail "python events client"; }
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"

# kiln run --json on the embedded store: the events as proto3 JSON lines,
# completed last; its output lines are in log events, not on stderr.
kiln run --json --no-cache --input busybox=/bin/busybox -- /inputs/busybox sh -c 'echo run-out; echo run-err >&2' >"$T/run.json" 2>"$T/run.err" ||
	fail "kiln run --json: $(cat "$T/run.err")"
$PY - "$T/run.json" <<'PY' || fail "kiln run --json printed: $(cat "$T/run.json")"
import base64, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
kinds = [next(iter(l)) for l in lines]
assert kinds[0] == "started" and kinds[-1] == "completed", kinds
logs = {}
for l in lines:
    if "log" in l:
        logs[l["log"]["stream"]] = logs.get(l["log"]["stream"], b"") + base64.b64decode(l["log"]["data"])
assert logs == {"STDOUT": b"run-out\n", "STDERR": b"run-err\n"}, logs
PY
grep -q run-out "$T/run.err" && fail "kiln run --json also wrote the log to stderr"
# a failed build: a failed event on stdout, the error on stderr, exit 1
rc=0
kiln run --json --no-cache --input busybox=/bin/busybox -- /inputs/busybox sh -c 'echo last-words; exit 4' >"$T/fail.json" 2>"$T/fail.err" || rc=$?
[ "$rc" = 1 ] || fail "a failed kiln run --json exited $rc"
tail -1 "$T/fail.json" | json failed.message | grep -q "status 4" || fail "no failed event: $(cat "$T/fail.json")"
# -L: the output on stderr as it comes
kiln run -L --no-cache --input busybox=/bin/busybox -- /inputs/busybox sh -c 'echo live-out' >/dev/null 2>"$T/live.err" || fail "kiln run -L"
grep -qx live-out "$T/live.err" || fail "kiln run -L did not show the output: $(cat "$T/live.err")"
echo ok
