#!/bin/sh
# `kiln hash` against the reference b3sum: the same bytes on stdout for files (empty, small,
# multi-chunk, names with spaces, backslashes and newlines), for standard input, at every
# kernel level; for files large enough to be hashed on several threads (read or mapped, 1-3
# threads); and for unreadable arguments (missing file, directory) one message on
# stderr naming it, the other files still hashed, exit status 1.
# env: KILN_BIN (the kiln binary), KILN_TEST_MUST_RUN=1 turns a skip into a failure.
set -u

kiln=${KILN_BIN:?KILN_BIN must name the kiln binary}
b3sum=/usr/bin/b3sum
failures=0

fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

if [ ! -x "$b3sum" ]; then
	echo "skip: $b3sum is not installed (Debian package b3sum)"
	[ "${KILN_TEST_MUST_RUN:-}" = 1 ] && exit 1
	exit 77
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kiln-test-hash.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
cd "$scratch" || exit 1

: >empty
printf 'hello' >small
head -c 1048577 /dev/urandom >big
# Past the 2 MiB where hashing goes multithreaded; not a power of two of chunks.
head -c 5243903 /dev/urandom >large
head -c 2097152 /dev/urandom >large2
head -c 5000 /dev/urandom >'with space'
printf 'x' >'back\slash'
printf 'y' >"$(printf 'new\nline')"
mkdir dir

# compare NAME EXPECTED_FILE ACTUAL_FILE
compare() {
	if ! cmp -s "$2" "$3"; then
		fail "$1: kiln and b3sum differ"
		echo "  b3sum:" >&2
		sed 's/^/    /' "$2" >&2
		echo "  kiln:" >&2
		sed 's/^/    /' "$3" >&2
	fi
}

# Files, including awkward names, at every level this machine can run (unknown or
# unsupported levels fall back to the best, which is then simply tested again).
"$b3sum" empty small big 'with space' 'back\slash' "$(printf 'new\nline')" >want.out
for level in "" portable sse41 avx2 avx512; do
	KILN_BLAKE3_SIMD=$level "$kiln" hash empty small big 'with space' 'back\slash' \
		"$(printf 'new\nline')" >got.out 2>got.err
	status=$?
	[ "$status" = 0 ] || fail "files (level '${level:-best}'): exit status $status"
	[ -s got.err ] && fail "files (level '${level:-best}'): unexpected stderr: $(cat got.err)"
	compare "files (level '${level:-best}')" want.out got.out
done

# Large files: several threads, reading or mapping, against b3sum's own threads and mmap.
"$b3sum" large large2 big small >want.out
for opts in "" "--threads 1" "--threads 2" "--threads 3" "--mmap" "--threads 3 --mmap" \
	"--threads=2"; do
	# shellcheck disable=SC2086 # word splitting on purpose
	"$kiln" hash $opts large large2 big small >got.out 2>got.err
	status=$?
	[ "$status" = 0 ] || fail "large files ($opts): exit status $status"
	[ -s got.err ] && fail "large files ($opts): unexpected stderr: $(cat got.err)"
	compare "large files (${opts:-default})" want.out got.out
done
"$b3sum" <large >want.out
"$kiln" hash <large >got.out || fail "large stdin: non-zero exit status"
compare "large file on stdin" want.out got.out
for bad in 0 65 x ""; do
	"$kiln" hash --threads "$bad" small >/dev/null 2>&1
	[ $? = 2 ] || fail "--threads '$bad': exit status is not 2"
done

# Standard input: no argument, '-', and from a pipe.
"$b3sum" <big >want.out
"$kiln" hash <big >got.out || fail "stdin: non-zero exit status"
compare "stdin, no argument" want.out got.out
"$kiln" hash - <big >got.out || fail "stdin '-': non-zero exit status"
compare "stdin '-'" want.out got.out
# shellcheck disable=SC2002 # a pipe on purpose: data arrives in pipe-sized pieces
cat big | "$kiln" hash >got.out || fail "stdin pipe: non-zero exit status"
compare "stdin from a pipe" want.out got.out
"$b3sum" <empty >want.out
"$kiln" hash <empty >got.out || fail "empty stdin: non-zero exit status"
compare "empty stdin" want.out got.out

# A missing file and a directory among good files: each named once on stderr, the good
# files still printed in order, exit status 1.
for bad in nope dir; do
	"$b3sum" small big >want.out
	"$kiln" hash small "$bad" big >got.out 2>got.err
	status=$?
	[ "$status" = 1 ] || fail "$bad: exit status $status, want 1"
	compare "$bad among good files" want.out got.out
	lines=$(wc -l <got.err)
	[ "$lines" = 1 ] || fail "$bad: $lines lines on stderr, want 1: $(cat got.err)"
	grep -q "'$bad'" got.err || fail "$bad: stderr does not name it: $(cat got.err)"
done
"$kiln" hash nope 2>got.err >/dev/null
grep -q "^kiln: hash: cannot open 'nope': No such file or directory$" got.err ||
	fail "missing file message: $(cat got.err)"
"$kiln" hash dir 2>got.err >/dev/null
grep -q "^kiln: hash: .*'dir': Is a directory$" got.err ||
	fail "directory message: $(cat got.err)"

# Usage.
"$kiln" hash --help >got.out 2>&1 || fail "--help: non-zero exit status"
grep -q "^usage: kiln hash" got.out || fail "--help: no usage line"
"$kiln" hash --bogus >/dev/null 2>got.err
[ $? = 2 ] || fail "unknown option: exit status is not 2"

if [ "$failures" -gt 0 ]; then
	echo "$failures failure(s)" >&2
	exit 1
fi
echo "ok"
