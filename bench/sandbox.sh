#!/bin/sh
# Sandbox cost (run by hand), two rows:
# 1. a trivial build (`:` under /bin/sh, one small input, one tiny output)
#    through a running `kiln daemon` on kiln's own sandbox (sandbox://),
#    against `bwrap --unshare-all` running the same busybox `sh -c :`;
# 2. what the seccomp filter, the cgroup limits and the oci-exec step cost
#    the OCI backend: a bare `runc run` of a kiln bundle with its config.json
#    as kiln writes it (kiln-sandbox oci-exec on fd 3 first, which installs
#    the seccomp programs on fd 4), against the same bundle without oci-exec
#    and linux.cgroupsPath.
# Runs are interleaved; prints medians and ratios. usage: bench/sandbox.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-30}
kiln=$PWD/build/kiln
work=$(mktemp -d /var/tmp/kiln-bench-sandbox.XXXXXX)
chmod 711 "$work"
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; umount "$work"/shape/*/scratch 2>/dev/null; rm -rf "$work"' EXIT
export KILN_HOME=$work/home
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk "BEGIN{printf \"%.1f\", $1*1000}"; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }

# --- 1. sandbox:// through the daemon vs bwrap
# --action-cache none: every round sends the same request, which must build
"$kiln" daemon -l "$work/kiln.sock" --build-service-addr "sandbox://$work/bundles" --action-cache none \
	>"$work/daemon.out" 2>"$work/daemon.err" &
daemon=$!
while ! grep -q '^listening' "$work/daemon.out"; do sleep 0.05; done
bwrap_cmd="bwrap --unshare-all --ro-bind /bin/busybox /bin/sh --proc /proc --dev /dev /bin/sh -c :"
/usr/bin/python3 bench/build_trivial.py "unix:$work/kiln.sock" "$PWD/proto" "$work/py" "$runs" \
	"$bwrap_cmd" >"$work/times"
kill $daemon
wait $daemon 2>/dev/null || true
k=$(cut -d' ' -f1 "$work/times" | median)
b=$(cut -d' ' -f2 "$work/times" | median)
printf 'kiln daemon DoBuild, sandbox://   %s ms\n' "$(ms "$k")"
printf 'bwrap --unshare-all sh -c :       %s ms   kiln/bwrap = %sx\n' "$(ms "$b")" "$(ratio "$k" "$b")"

# --- 2. seccomp and limits on the OCI backend: bare runc on a kiln bundle
"$kiln" run --build-service-addr "oci://$work/shape?keep-failed=1" --bin-sh \
	--input input=README.md --output out -- /bin/sh -c false >/dev/null 2>&1 || true
src=$(ls -d "$work"/shape/*-*-*-*-*)
for v in full bare; do
	mkdir "$work/$v"
	(cd "$src" && tar --one-file-system -cf - root dev scratch config.json seccomp.bpf) |
		tar -C "$work/$v" -xpf -
	mkdir -p "$work/$v/inputs" "$work/$v/scratch/tmp"
	cp README.md "$work/$v/inputs/input"
	chown --reference="$src" "$work/$v"
done
/usr/bin/python3 - "$work/full/config.json" "$work/bare/config.json" <<'PY'
import json, sys
for path, strip in ((sys.argv[1], False), (sys.argv[2], True)):
    c = json.load(open(path))
    args = c["process"]["args"]
    # kiln's args are /proc/self/fd/3 oci-exec [-u NAME]... -- COMMAND...
    prefix = [] if strip else args[:args.index("--") + 1]
    c["process"]["args"] = prefix + ["/bin/sh", "-c", ":"]
    # one cgroup path per run is set below; the bare bundle has none
    c["linux"].pop("cgroupsPath", None)
    json.dump(c, open(path, "w"))
PY
i=0
: >"$work/oci-times"
while [ $i -lt "$runs" ]; do
	# the full bundle runs in a build cgroup with kiln's limits, as kiln runs it
	mkdir -p /sys/fs/cgroup/memory/kiln/bench-$i /sys/fs/cgroup/pids/kiln/bench-$i 2>/dev/null || true
	echo 1073741824 >/sys/fs/cgroup/memory/kiln/bench-$i/memory.limit_in_bytes 2>/dev/null || true
	echo 8192 >/sys/fs/cgroup/pids/kiln/bench-$i/pids.max 2>/dev/null || true
	/usr/bin/python3 - "$work/full/config.json" "$i" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["linux"]["cgroupsPath"] = "/kiln/bench-%s/c" % sys.argv[2]
json.dump(c, open(sys.argv[1], "w"))
PY
	t0=$(date +%s.%N)
	runc --root "$work/runc" run --preserve-fds 2 --bundle "$work/full" full-$i >/dev/null 2>&1 \
		</dev/zero 3<build/kiln-sandbox 4<"$work/full/seccomp.bpf" ||
		{ echo "bench: the kiln bundle failed" >&2; exit 1; }
	t1=$(date +%s.%N)
	runc --root "$work/runc" run --bundle "$work/bare" bare-$i >/dev/null 2>&1 </dev/zero ||
		{ echo "bench: the bare bundle failed" >&2; exit 1; }
	t2=$(date +%s.%N)
	echo "$t0 $t1 $t2" | awk '{print $2-$1, $3-$2}' >>"$work/oci-times"
	for d in /sys/fs/cgroup/*/kiln/bench-$i; do rmdir "$d/c" "$d" 2>/dev/null || true; done
	i=$((i + 1))
done
f=$(cut -d' ' -f1 "$work/oci-times" | median)
n=$(cut -d' ' -f2 "$work/oci-times" | median)
printf 'runc run, kiln bundle              %s ms\n' "$(ms "$f")"
printf 'runc run, no seccomp/cgroup/exec   %s ms   cost = %sx\n' "$(ms "$n")" "$(ratio "$f" "$n")"
