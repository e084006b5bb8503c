#!/bin/sh
# A build fleet on one machine: one store daemon and three builder daemons
# (sandbox://, concurrency 1), each in a network namespace of its own with
# its own address on a bridge this test makes, the builders using the store
# daemon through the read-through caches (cache+grpc+http://store?near=…)
# and sharing its action cache (--action-cache grpc+http://store), and
# haproxy in front (mode http, proto h2, balance leastconn, health checks
# that are grpc.health.v1 Check calls).
#
# - 60 distinct builds through haproxy all succeed and spread over all three
#   builders (their metrics say how many each ran); the input is fetched
#   from the store daemon once per builder, not once per build;
# - a build repeated later is answered from the shared action cache,
#   whichever builder gets it;
# - 30 identical builds through a second frontend that balances on the
#   kiln-action header (the request's identity) run once;
# - a builder killed (SIGKILL) in the middle of builds is taken out by the
#   health check; the calls it had break (haproxy resets their streams) and
#   kiln's client sends them again, so every build succeeds, and the builds
#   after it run on the other two;
# - restarted, it is put back by the health check and builds again.
#
# Only addresses this test made (10.X.Y.0/24 on its own bridge) are
# contacted (fleet_lib.sh). Needs root, haproxy, ip and nsenter.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

# the sample configuration users copy is valid and checks with these calls
sample=$fleet_src/contrib/haproxy/haproxy.cfg
haproxy -c -f "$sample" >/dev/null 2>&1 || fail "contrib/haproxy/haproxy.cfg is not valid: $(haproxy -c -f "$sample" 2>&1 | head -3)"
for svc in tvix.build.v1.BuildService tvix.castore.v1.BlobService; do
	$check $svc | grep send-binary | grep -qxF -f /dev/stdin "$sample" ||
		fail "contrib/haproxy/haproxy.cfg lacks the health check of $svc"
done

start_store
for n in 1 2 3; do start_builder $n; done
start_haproxy 1 2 3

# --- requests ---
A="grpc+http://$net.1:8000"
bbnode=$(kiln import --blob-service-addr "$A" --directory-service-addr "$A" /bin/busybox |
	json node | sed 's/"file": {/"file": {"name": "YnVzeWJveA==", /')
# request FILE TAG SECONDS: a distinct build that sleeps, then writes TAG
request() {
	cat >"$1" <<JSON
{"inputs": [$bbnode], "commandArgs": ["/nix/store/busybox", "sh", "-c", "/nix/store/busybox sleep $3; echo $2 > \$out"],
 "workingDir": "build", "scratchPaths": ["build", "nix/store"], "inputsDir": "nix/store",
 "outputs": ["nix/store/x-out"],
 "environmentVars": [{"key": "PATH", "value": "L2Jpbg=="}, {"key": "out", "value": "L25peC9zdG9yZS94LW91dA=="}],
 "constraints": {"system": "x86_64-linux"}}
JSON
}
# submit PREFIX N SECONDS [TAG [ADDR]]: N builds at once through haproxy
# (distinct ones, or all writing TAG); waits for all, leaves
# PREFIX.$i.{out,err,rc}
submit() {
	pids=
	i=0
	while [ $i -lt "$2" ]; do
		request "$T/$1.$i.json" "${4:-$1-$i-$id}" "$3"
		( rc=0; kiln build --no-cache --build-service-addr "${5:-$A}" "$T/$1.$i.json" \
			>"$T/$1.$i.out" 2>"$T/$1.$i.err" || rc=$?; echo $rc >"$T/$1.$i.rc" ) &
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait $p; done
}
# count PREFIX N: how many of the builds succeeded
count_ok() { n=0; i=0; while [ $i -lt "$2" ]; do [ "$(cat "$T/$1.$i.rc")" = 0 ] && n=$((n + 1)); i=$((i + 1)); done; echo $n; }
builds() { metric "$1" kiln_builds_total; }

# 1. 60 distinct builds, spread over all three builders
submit w 60 0.2
[ "$(count_ok w 60)" = 60 ] || fail "$((60 - $(count_ok w 60))) of 60 builds failed: $(cat "$T"/w.*.err | sort | uniq -c | head -5)"
b1=$(builds 1) b2=$(builds 2) b3=$(builds 3)
echo "60 builds: b1 $b1, b2 $b2, b3 $b3"
[ $((b1 + b2 + b3)) = 60 ] || fail "the builders ran $((b1 + b2 + b3)) builds, not 60"
for b in $b1 $b2 $b3; do [ "$b" -ge 10 ] || fail "not spread over all builders: $b1 $b2 $b3"; done
# busybox came from the store daemon once per builder at most
reads=$(metric s kiln_blobs_read_total)
[ "$reads" -le 3 ] || fail "the store daemon sent $reads blobs for 60 builds (want one per builder)"
# each output is in the store daemon (written through the builders' caches)
out=$(json outputs.0.file.digest <"$T/w.7.out")
[ "$(kiln cat --blob-service-addr "$A" "b3:$out")" = "w-7-$id" ] || fail "output of build 7 not in the store"

# 2. three earlier builds again, one after the other: whichever builder
# leastconn picks answers from the shared action cache
ran() { echo $(( $(metric 1 kiln_build_duration_seconds_count) + $(metric 2 kiln_build_duration_seconds_count) + $(metric 3 kiln_build_duration_seconds_count) )); }
hits() { echo $(( $(metric 1 kiln_action_cache_hits_total) + $(metric 2 kiln_action_cache_hits_total) + $(metric 3 kiln_action_cache_hits_total) )); }
before=$(ran) h0=$(hits)
for i in 7 8 9; do
	kiln build --no-cache --build-service-addr "$A" "$T/w.$i.json" >"$T/again.$i.out" ||
		fail "build $i again failed"
	cmp -s "$T/w.$i.out" "$T/again.$i.out" || fail "build $i again answered another Build"
done
[ "$(ran)" = "$before" ] || fail "repeated builds ran again ($(( $(ran) - before )) of 3)"
[ $(( $(hits) - h0 )) = 3 ] || fail "repeated builds: $(( $(hits) - h0 )) cache hits, not 3"
echo "3 builds repeated: all answered from the shared action cache"

# 3. 30 identical builds through the affine frontend: one build runs, on one
# builder, and every caller gets its result
before=$(ran)
submit same 30 1 "same-$id" "grpc+http://$net.1:8001"
[ "$(count_ok same 30)" = 30 ] || fail "identical builds failed: $(cat "$T"/same.*.err | head -3)"
[ $(( $(ran) - before )) = 1 ] || fail "30 identical builds ran $(( $(ran) - before )) times through hdr(kiln-action), not once"
[ "$(json outputs.0.file.digest <"$T/same.0.out")" = "$(json outputs.0.file.digest <"$T/same.29.out")" ] ||
	fail "identical builds answered differently"
echo "30 identical builds through hdr(kiln-action): one ran"

# 4. a builder killed in the middle of builds: the calls it had are sent
# again by the client (UNAVAILABLE, or a stream haproxy reset), and all
# succeed on the other two
(sleep 1.5; kill -KILL $PID_2) &
killer=$!
submit k 18 1
wait $killer || true
ok=$(count_ok k 18)
again=$(grep -l "sending the build again" "$T"/k.*.err | wc -l)
echo "killed b2: $ok of 18 builds succeeded, $again of them sent again, as in:"
grep -h "sending the build again" "$T"/k.*.err | head -1
[ "$ok" = 18 ] || fail "$((18 - ok)) of 18 builds failed with b2 killed: $(cat "$T"/k.*.err | grep -v 'sending the build again' | sort | uniq -c | head -5)"
[ "$again" -ge 1 ] || fail "no build was sent again when b2 was killed (did b2 take none?)"
grep -h "sending the build again" "$T"/k.*.err | grep -q "UNAVAILABLE\|UNKNOWN: Stream removed" ||
	fail "the retries do not say why: $(grep -h 'sending the build again' "$T"/k.*.err | head -2)"
wait_state b2 DOWN
before=$(( $(builds 1) + $(builds 3) ))
submit d 12 0.2
[ "$(count_ok d 12)" = 12 ] || fail "builds failed with b2 down: $(cat "$T"/d.*.err | head -3)"
[ $(( $(builds 1) + $(builds 3) - before )) = 12 ] || fail "with b2 down, b1 and b3 did not run all 12"

# 5. restarted, b2 rejoins (with its near store as it was)
start_builder 2
wait_state b2 UP
submit r 12 0.3
[ "$(count_ok r 12)" = 12 ] || fail "builds failed after b2 came back: $(cat "$T"/r.*.err | head -3)"
[ "$(builds 2)" -ge 1 ] || fail "the restarted b2 took no build"
echo "after the restart: b2 ran $(builds 2) of 12"
grep -q "b2 is DOWN\|Server builders/b2 is DOWN" "$T/haproxy.log" || fail "haproxy did not log b2 down"
echo ok
