#!/bin/sh
# kill -9 of the daemon during concurrent blob Puts (kill_blob_put.py) on the
# one persistent blob store, the default objectstore+file://$KILN_HOME/blobs
# (lmdb:// and objectstore+file:// hold directories; kill_dir_put.sh).
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
export T
CYCLES=${CYCLES:-24} timeout 900 $PY "$(dirname "$0")/kill_blob_put.py" || fail "kill -9 during Puts"
echo ok
