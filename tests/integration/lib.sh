# Shared helpers for the shell integration tests. Source it; it sets -eu, makes
# a scratch directory $T (removed on exit) and points KILN_HOME into it.
set -eu
: "${KILN_BIN:?KILN_BIN must point at the built kiln binary}"
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-test.XXXXXX")
export KILN_HOME="$T/home"
unset BLOB_SERVICE_ADDR DIRECTORY_SERVICE_ADDR BUILD_SERVICE_ADDR
cleanup_hooks=""
on_exit() {
	eval "$cleanup_hooks"
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
