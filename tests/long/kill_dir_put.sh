#!/bin/sh
# kill -9 of `kiln import` and of the daemon during a big tree's import
# through the daemon (kill_dir_put.py), on both persistent directory stores:
# the default lmdb://$KILN_HOME/directories and objectstore+file://.
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
export T
L="$(dirname "$0")"
CYCLES=${CYCLES:-3} timeout 600 $PY "$L/kill_dir_put.py" || fail "lmdb directory store"
CYCLES=${CYCLES:-1} timeout 600 $PY "$L/kill_dir_put.py" --directory-service-addr "objectstore+file://$T/dirs-os.{cyc}" ||
	fail "objectstore directory store"
echo ok
