#!/bin/sh
# Garbage on the wire (wire_garbage.py): random, truncated and mutated
# messages to every method of a running daemon, and raw HTTP/2 garbage.
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
export T
timeout 900 $PY "$(dirname "$0")/wire_garbage.py" "dummy://" || fail "garbage on the wire"
echo ok
