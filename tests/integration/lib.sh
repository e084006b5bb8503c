# Shared helpers for the shell integration tests. Source it; it sets -eu, makes
# a scratch directory $T (removed on exit) and points KILN_HOME into it.
set -eu
: "${KILN_BIN:?KILN_BIN must point at the built kiln binary}"
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-test.XXXXXX")
# builds are set up as unprivileged ids, which must reach the bundles below
chmod 711 "$T"
export KILN_HOME="$T/home"
unset BLOB_SERVICE_ADDR DIRECTORY_SERVICE_ADDR BUILD_SERVICE_ADDR
cleanup_hooks=""
on_exit() {
	eval "$cleanup_hooks"
	# kept bundles (keep-failed=1) keep their scratch tmpfs mounted
	awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m"; done
	rm -rf "$T"
}
trap on_exit EXIT
PY=/usr/bin/python3
kiln() { "$KILN_BIN" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# json FIELD.PATH < json: prints a field of a JSON document (dots separate keys)
json() { $PY -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v=v[int(k)] if isinstance(v,list) else v[k]
print(json.dumps(v) if isinstance(v,(dict,list)) else v)' "$1"; }
# expect_fail PATTERN CMD...: CMD must fail and print PATTERN on stderr
expect_fail() {
	pat=$1; shift
	if "$@" >"$T/.stdout" 2>"$T/.stderr"; then fail "expected failure: $*"; fi
	grep -q -- "$pat" "$T/.stderr" || { cat "$T/.stderr" >&2; fail "stderr of '$*' lacks '$pat'"; }
}

# start_daemon ARGS...: starts `kiln daemon ARGS` in the background and waits
# (10 s at most) for its "listening on" line. Sets DAEMON_PID, DAEMON_LISTEN
# (what follows "listening on ") and DAEMON_ERR (its stderr file). The daemon
# is stopped on exit, whatever happens.
daemon_n=0
start_daemon() {
	daemon_n=$((daemon_n + 1))
	dlog="$T/daemon.$daemon_n"
	"$KILN_BIN" daemon "$@" >"$dlog.out" 2>"$dlog.err" &
	DAEMON_PID=$!
	DAEMON_ERR="$dlog.err"
	cleanup_hooks="stop_daemon $DAEMON_PID || true; $cleanup_hooks"
	i=0
	while ! grep -q '^listening on ' "$dlog.out" 2>/dev/null; do
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			cat "$dlog.err" >&2
			fail "kiln daemon $* exited before listening"
		fi
		i=$((i + 1))
		[ $i -lt 200 ] || fail "kiln daemon $* did not start listening within 10 s"
		sleep 0.05
	done
	DAEMON_LISTEN=$(sed -n 's/^listening on //p' "$dlog.out")
}
# stop_daemon PID: SIGTERM, then SIGKILL after 10 s. Returns the exit status
# (when PID is a child of this shell).
stop_daemon() {
	kill -TERM "$1" 2>/dev/null || return 0
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge 200 ]; then
			kill -KILL "$1" 2>/dev/null
			break
		fi
		sleep 0.05
	done
	wait "$1" 2>/dev/null
}
# port_of "127.0.0.1:1234" → 1234
port_of() { echo "${1##*:}"; }
