#!/bin/sh
# Disk full: $KILN_HOME on a 48 MiB tmpfs. `kiln import` and a gRPC Put
# through the daemon of something bigger fail with one line naming ENOSPC
# and a non-zero exit (an error status); what was stored before still reads
# back verified; once the tmpfs is grown (space freed), the same import works.
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }
export T
small="$T/small"
mkdir "$small"
mount -t tmpfs -o size=48m kiln-test-small "$small"
cleanup_hooks="umount -l '$small' 2>/dev/null || true; $cleanup_hooks"
export KILN_HOME="$small/home"
gen() { $PY -c 'import random,sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(int(sys.argv[2])))' "$@"; }

# stored before: a small tree
mkdir -p "$T/before/d"
gen 1 3000000 >"$T/before/a"; gen 2 100000 >"$T/before/d/b"; echo hi >"$T/before/d/c"
before=$(kiln import "$T/before" | json node.directory.digest)

# an import that does not fit (incompressible, 80 MiB)
mkdir "$T/big"; gen 3 83886080 >"$T/big/f"
if kiln import "$T/big" >"$T/imp.out" 2>"$T/imp.err"; then fail "import of 80 MiB into 48 MiB succeeded"; fi
[ "$(wc -l <"$T/imp.err")" = 1 ] || { cat "$T/imp.err" >&2; fail "import: not one line"; }
grep -q "No space left on device" "$T/imp.err" || { cat "$T/imp.err" >&2; fail "import: no ENOSPC"; }
echo "import: $(cat "$T/imp.err")"

# the same through the daemon: kiln import via gRPC, and a Put from Python
start_daemon -l "$T/d.sock" --build-service-addr dummy://
G="grpc+unix://$T/d.sock"
if kiln import --blob-service-addr "$G" --directory-service-addr "$G" "$T/big" >"$T/gimp.out" 2>"$T/gimp.err"; then
	fail "import through the daemon succeeded"
fi
[ "$(wc -l <"$T/gimp.err")" = 1 ] || { cat "$T/gimp.err" >&2; fail "import via daemon: not one line"; }
grep -q "No space left on device" "$T/gimp.err" || { cat "$T/gimp.err" >&2; fail "import via daemon: no ENOSPC"; }
echo "import through the daemon: $(cat "$T/gimp.err")"
timeout 300 $PY - "$T/d.sock" "$T/big/f" <<'PYEOF' || fail "gRPC Put"
import os, sys
sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_ROOT"], "tests", "long"))
from longlib import *
ch = grpc.insecure_channel("unix:" + sys.argv[1])
stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
data = open(sys.argv[2], "rb").read()
try:
    put_blob(stub, data)
    raise SystemExit("Put of 80 MiB succeeded")
except grpc.RpcError as e:
    assert "No space left on device" in e.details() and "\n" not in e.details(), e.details()
    assert e.code() in (SC.RESOURCE_EXHAUSTED, SC.INTERNAL, SC.UNAVAILABLE), e.code()
    print("gRPC Put:", e.code(), e.details())
# the daemon still serves: a small Put works where space is left
small = b"still serving"
assert read_blob(stub, put_blob(stub, small)) == small
PYEOF
# everything stored before reads back verified (kiln export checks digests)
kiln export "b3:$before" "$T/out1" >/dev/null || fail "export after ENOSPC"
diff -r "$T/before" "$T/out1" || fail "what was stored before differs"
kiln export --blob-service-addr "$G" --directory-service-addr "$G" "b3:$before" "$T/out2" >/dev/null ||
	fail "export through the daemon after ENOSPC"
diff -r "$T/before" "$T/out2" || fail "differs through the daemon"
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
# nothing half-written is left taking space
left=$(find "$KILN_HOME" -name '.tmp*' | wc -l)
[ "$left" = 0 ] || fail "$left temporary files left"
echo "after the failures: $(df -k --output=used "$small" | tail -1) KiB used of 49152"

# space freed: the same import works and reads back
mount -o remount,size=256m "$small"
want=$(kiln import --blob-service-addr memory:// --directory-service-addr memory:// "$T/big" | json node.directory.digest)
got=$(kiln import "$T/big" | json node.directory.digest)
[ "$got" = "$want" ] || fail "import after freeing space: $got, want $want"
kiln export "b3:$got" "$T/out3" >/dev/null && cmp "$T/big/f" "$T/out3/f" || fail "big import reads back wrong"
echo "RESULT disk_full: import, import via the daemon and a gRPC Put of 80 MiB into a 48 MiB tmpfs each failed with one line naming ENOSPC; the earlier tree read back verified; after growing the tmpfs the same import gave the same root"
echo ok
