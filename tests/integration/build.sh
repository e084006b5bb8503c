#!/bin/sh
# Hermetic builds through the CLI (kiln run, kiln build) on a local build
# service: results, failures, isolation, timeouts, cancellation,
# concurrency, and that nothing is left behind. KILN_TEST_BACKEND chooses
# the backend: oci (runc) or sandbox (kiln's own); the same checks hold for
# both.
. "$(dirname "$0")/lib.sh"
backend=${KILN_TEST_BACKEND:-sandbox}
[ "$backend" = oci ] && { command -v runc >/dev/null || fail "runc is not installed"; }
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

bundles="$KILN_HOME/bundles"
# a cgroup parent of its own: builds of tests running beside it are not ours
cg=kiln-test-$$
export BUILD_SERVICE_ADDR="$backend://$bundles?cgroup=$cg"
bb=/bin/busybox
run() { kiln run --input busybox=$bb "$@"; }

# a deterministic build: exact output digest, equal to importing the same tree
out=$(run --output out -- /inputs/busybox sh -c 'mkdir /out/d; echo hello > /out/d/greeting; ln -s d/greeting /out/link')
mkdir -p "$T/expect/out/d" && echo hello >"$T/expect/out/d/greeting" && ln -s d/greeting "$T/expect/out/link"
want=$(kiln import "$T/expect/out" | json node.directory.digest)
[ "$(echo "$out" | json node.directory.digest)" = "$want" ] || fail "output digest: $out"

# /dev/kvm as Nix's sandbox has it: with kvm=1 a node of the host's, its
# mode kept; with kvm=0 none
devls() { kiln run --no-cache --build-service-addr "$backend://$bundles?cgroup=$cg&kvm=$1" --input busybox=$bb \
	--output out -- /inputs/busybox sh -c '/inputs/busybox ls -l /dev > /out/l' | json node.directory.digest; }
d0=$(devls 0)
kiln export "b3:$d0" "$T/dev0"
grep -q ' kvm$' "$T/dev0/l" && fail "kvm=0: /dev/kvm in the build: $(cat "$T/dev0/l")"
if [ -c /dev/kvm ]; then
	d1=$(devls 1)
	kiln export "b3:$d1" "$T/dev1"
	line=$(grep ' kvm$' "$T/dev1/l") || fail "kvm=1: no /dev/kvm in the build: $(cat "$T/dev1/l")"
	[ "$(echo "$line" | cut -c1-10)" = "$(stat -c %A /dev/kvm)" ] || fail "/dev/kvm's mode in the build: $line"
fi

# needles: contents, symlink targets and names all count; not found → absent
out=$(run --needle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa --needle bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb \
	--needle cccccccccccccccccccccccccccccccc --needle dddddddddddddddddddddddddddddddd \
	--output o1 --output o2 --output o3 -- /inputs/busybox sh -c '
	echo "ref aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" > /o1/file
	ln -s /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x /o2/link
	touch /o3/cccccccccccccccccccccccccccccccc
	echo /inputs/busybox > /o3/uses-input')
[ "$(echo "$out" | sed -n 1p | json needles)" = '["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]' ] || fail "needle in contents: $out"
[ "$(echo "$out" | sed -n 2p | json needles)" = '["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]' ] || fail "needle in symlink: $out"
[ "$(echo "$out" | sed -n 3p | json needles)" = '["/inputs/busybox", "cccccccccccccccccccccccccccccccc"]' ] \
	|| fail "needle in name / input reference: $out"

# --export writes the outputs
run --output out --export "$T/exported" -- /inputs/busybox sh -c 'echo x > /out/f' >/dev/null
[ "$(cat "$T/exported/out/f")" = x ] || fail "--export"

# kiln build with a JSON request; the echo validates and outputs are named
bbnode=$(kiln import $bb | json node | sed 's/"file": {/"file": {"name": "YnVzeWJveA==", /')
cat >"$T/req.json" <<JSON
{"inputs": [$bbnode], "commandArgs": ["/nix/store/busybox", "sh", "-c", "echo hi > /nix/store/x-out"],
 "workingDir": "build", "scratchPaths": ["build", "nix/store"], "inputsDir": "nix/store",
 "outputs": ["nix/store/x-out"], "environmentVars": [{"key": "PATH", "value": "L2Jpbg=="}],
 "constraints": {"system": "x86_64-linux"}, "refscanNeedles": ["x-out"]}
JSON
kiln build "$T/req.json" >"$T/build.json"
[ "$(json outputs.0.file.name <"$T/build.json")" = "$(printf x-out | base64)" ] || fail "output name"
[ "$(json buildRequest.workingDir <"$T/build.json")" = build ] || fail "request echo"
kiln build - <"$T/req.json" >/dev/null || fail "request on stdin"

# failures: exit status and log tail, missing output, constraints, bad requests
expect_fail "exited with status 3; last lines of its stdout:" \
	run --output out -- /inputs/busybox sh -c 'echo some-output; echo to-stderr >&2; exit 3'
grep -q "to-stderr" "$T/.stderr" || fail "stderr tail missing"
expect_fail "exited with status 137 (signal 9)" run --output out -- /inputs/busybox sh -c '/inputs/busybox sh -c "kill -9 \$\$"; exit $?'
expect_fail "output out/missing was not produced" run --output out/missing -- /inputs/busybox true
sed 's/x86_64-linux/aarch64-linux/' "$T/req.json" >"$T/bad.json"
expect_fail "unmet constraint: system 'aarch64-linux'" kiln build "$T/bad.json"
sed 's/"system": "x86_64-linux"/"system": "x86_64-linux", "minMemory": "999999999999999"/' \
	"$T/req.json" >"$T/bad.json"
expect_fail "unmet constraint: min_memory" kiln build "$T/bad.json"
sed 's/"workingDir": "build"/"workingDir": "\/build"/' "$T/req.json" >"$T/bad.json"
expect_fail "invalid working_dir" kiln build "$T/bad.json"
sed 's/"outputs": \["nix\/store\/x-out"\]/"outputs": ["elsewhere\/x"]/' "$T/req.json" >"$T/bad.json"
expect_fail "output elsewhere/x is not below a scratch path" kiln build "$T/bad.json"
expect_fail "invalid JSON" sh -c "echo '{' | $KILN_BIN build -"

# isolation
out=$(run --output out -- /inputs/busybox sh -c '
	cd /out
	/inputs/busybox ls / > root-listing
	/inputs/busybox ls /etc > etc-listing
	/inputs/busybox cat /proc/net/dev | /inputs/busybox tail -n +3 | /inputs/busybox cut -d: -f1 | /inputs/busybox tr -d " " > netdevs
	/inputs/busybox id -u > uid
	/inputs/busybox cat /proc/self/uid_map > uid_map
	/inputs/busybox touch /inputs/busybox 2> touch-input || true
	/inputs/busybox test -e /bin/sh && echo yes > bin-sh || echo no > bin-sh
	/inputs/busybox test -e /root && echo yes > host-root || echo no > host-root')
kiln export "$(echo "$out" | json node)" "$T/iso"
[ "$(cat "$T/iso/netdevs")" = lo ] || fail "network namespace has more than loopback: $(cat "$T/iso/netdevs")"
[ "$(cat "$T/iso/uid")" = 1000 ] || fail "build user is not uid 1000"
awk '$1 == 1000 && $2 != 0 {ok=1} END {exit !ok}' "$T/iso/uid_map" || fail "build user maps to host root: $(cat "$T/iso/uid_map")"
grep -q "Read-only file system" "$T/iso/touch-input" || fail "input writable: $(cat "$T/iso/touch-input")"
[ "$(cat "$T/iso/bin-sh")" = no ] || fail "/bin/sh present without provide_bin_sh"
[ "$(cat "$T/iso/host-root")" = no ] || fail "host filesystem visible"
[ "$(tr '\n' ' ' <"$T/iso/etc-listing")" = "group hosts passwd " ] || fail "/etc: $(cat "$T/iso/etc-listing")"
out=$(run --network --bin-sh --output out -- /bin/sh -c '
	/inputs/busybox cat /proc/net/dev | /inputs/busybox tail -n +3 | /inputs/busybox wc -l > /out/n
	/inputs/busybox grep nixbld /etc/passwd > /out/pw')
kiln export "$(echo "$out" | json node)" "$T/net"
[ "$(cat "$T/net/n")" -gt 1 ] || fail "--network did not give the host network"
grep -q '^nixbld:x:1000:100:' "$T/net/pw" || fail "passwd entry for the build user"

# timeout and cancellation kill the build
start=$(date +%s)
expect_fail "timed out after 1 seconds" run --timeout 1 --output out -- /inputs/busybox sleep 60
[ $(( $(date +%s) - start )) -lt 15 ] || fail "timeout took too long"
"$KILN_BIN" run --input busybox=$bb --output out -- /inputs/busybox sleep 60 >/dev/null 2>"$T/cancel.err" &
pid=$!
sleep 2
kill -TERM $pid
wait $pid && fail "cancelled build succeeded"
grep -q "cancelled" "$T/cancel.err" || fail "cancel message: $(cat "$T/cancel.err")"

# concurrency: with concurrency=1, three builds never overlap (three
# different requests: the action cache would answer identical ones)
for i in 1 2 3; do
	kiln run --build-service-addr "$backend://$bundles?concurrency=1" --env I=$i --input busybox=$bb --output out -- \
		/inputs/busybox sh -c '/inputs/busybox cut -d" " -f1 /proc/uptime > /out/t; /inputs/busybox sleep 0.5; /inputs/busybox cut -d" " -f1 /proc/uptime >> /out/t' \
		>"$T/c$i" &
done
wait
for i in 1 2 3; do kiln export "$(json node <"$T/c$i")" "$T/cx$i"; done
cat "$T"/cx*/t | $PY -c '
import sys
v = [float(x) for x in sys.stdin.read().split()]
iv = sorted(zip(v[0::2], v[1::2]))
assert all(a[1] <= b[0] for a, b in zip(iv, iv[1:])), iv' || fail "builds overlapped"

# keep-failed keeps the bundle of a failed build, and only then
kiln run --build-service-addr "$backend://$T/kept?keep-failed=1&cgroup=$cg" --input busybox=$bb --output out -- \
	/inputs/busybox false 2>/dev/null && fail "false succeeded"
[ "$(ls "$T/kept" | wc -l)" = 1 ] || fail "keep-failed kept $(ls "$T/kept" | wc -l) bundles"
[ "$backend" = sandbox ] || grep -q '"terminal": false' "$T/kept"/*/config.json || fail "config.json"
# its scratch space stays mounted for inspection; it must be unmounted to go
grep -q " $T/kept/.*/scratch tmpfs " /proc/mounts || fail "kept scratch not mounted"
umount "$T"/kept/*/scratch
rm -rf "$T/kept"
# kiln run -K: this one build's bundle is kept if it fails, at most
# keep-failed-max at once; without -K nothing is
ksvc="$backend://$T/kept?keep-failed-max=1&cgroup=$cg"
expect_fail "exited with status 1" kiln run --build-service-addr "$ksvc" --input busybox=$bb --output out -- \
	/inputs/busybox false
[ "$(ls "$T/kept" | wc -l)" = 0 ] || fail "a failed build without -K was kept"
expect_fail "note: keeping build directory '$T/kept/" kiln run -K --build-service-addr "$ksvc" \
	--input busybox=$bb --output out -- /inputs/busybox false
[ "$(ls "$T/kept" | wc -l)" = 1 ] || fail "-K kept $(ls "$T/kept" | wc -l) bundles"
expect_fail "not keeping the build directory: 1 failed builds are kept already" \
	kiln run -K --build-service-addr "$ksvc" --input busybox=$bb --output out -- /inputs/busybox false
[ "$(ls "$T/kept" | wc -l)" = 1 ] || fail "keep-failed-max=1 kept $(ls "$T/kept" | wc -l) bundles"
umount "$T"/kept/*/scratch 2>/dev/null || true
rm -rf "$T/kept"

# nothing left behind: bundles, runtime state, mounts
[ "$(ls -A "$bundles")" = .state ] || fail "bundles left: $(ls -A "$bundles")"
if [ "$backend" = oci ]; then
	[ -z "$(ls -A "$bundles/.state/runc")" ] || fail "runc state left: $(ls -A "$bundles/.state/runc")"
	[ -z "$(runc --root "$bundles/.state/runc" list -q)" ] || fail "containers left"
fi
left=$(find /sys/fs/cgroup/*/$cg /sys/fs/cgroup/$cg -mindepth 1 -type d 2>/dev/null || true)
[ -z "$left" ] || fail "cgroups left: $left"
rmdir /sys/fs/cgroup/*/$cg 2>/dev/null || true
expect_fail "cgroup must be one name" kiln run --build-service-addr "$backend://$T/b?cgroup=../x" \
	--input busybox=$bb --output out -- /inputs/busybox true
grep -q "$T" /proc/mounts && fail "mounts left: $(grep "$T" /proc/mounts)"
echo ok
