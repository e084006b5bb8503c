#!/bin/sh
# The build fleet (run by hand, as root): tests/integration/fleet_lib.sh's
# layout (a store daemon, builders in network namespaces, haproxy in front),
# driven by one Python grpcio client (bench/fleet_builds.py).
#
# 1. N distinct trivial builds submitted at once through haproxy (leastconn)
#    over three builders of concurrency 1, against the same N reached
#    directly on one builder of concurrency 3 (the same stores): builds per
#    second, paired rounds, the median ratio (goal >= 0.9).
# 2. 200 identical requests at once through haproxy's hdr(kiln-action)
#    frontend, against one build of the same kind alone (a trivial one, and
#    one of a second): how many ran (want 1) and the last answer's time over
#    the lone build's (goal <= 1.2).
#
# usage: bench/fleet.sh [ROUNDS [N]]   (default 5 rounds of 200)
set -eu
rounds=${1:-5}
n=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
export KILN_BIN=${KILN_BIN:-$here/../build/kiln}
export KILN_SANDBOX_HELPER=${KILN_SANDBOX_HELPER:-$here/../build/kiln-sandbox}
TMPDIR=/var/tmp
. "$here/../tests/integration/lib.sh"
# haproxy's default of 100 streams per client connection would hold back
# half of the 200 at once
FLEET_HAPROXY_GLOBAL="  tune.h2.max-concurrent-streams 512"
. "$here/../tests/integration/fleet_lib.sh"

start_store
for b in 1 2 3; do start_builder $b 1; done
start_builder 4 3
start_haproxy 1 2 3
$PY "$here/fleet_builds.py" "$here/../proto" "$T/py" "$rounds" "$n" \
	"$net.1:8000" "$(addr 4):8000" "$net.1:8001" "$(addr 1):9100" "$(addr 2):9100" "$(addr 3):9100"
