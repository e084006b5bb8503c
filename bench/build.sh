#!/bin/sh
# Build latency (run by hand): a trivial build (`:` under /bin/sh, one small
# input, one tiny output) end to end through a running `kiln daemon`, against
# a bare `runc run` of a bundle of the same shape (same namespaces, mounts and
# id mappings; the input bind-mounted from a plain directory instead of FUSE),
# and against a trivial sandboxed `nix-build`. Runs are interleaved; prints
# medians and ratios. usage: bench/build.sh [RUNS]
# RUNTIME=crun compares kiln on crun with a bare `crun run` (in a private mount
# namespace without /sys/fs/cgroup/unified, as kiln runs it here).
set -eu
cd "$(dirname "$0")/.."
runs=${1:-20}
runtime=${RUNTIME:-runc}
kiln=$PWD/build/kiln
work=$(mktemp -d /var/tmp/kiln-bench-build.XXXXXX)
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
export KILN_HOME=$work/home

# --action-cache none: every round sends the same request, which must build
"$kiln" daemon -l "$work/kiln.sock" --build-service-addr "oci://$work/bundles?runtime=$runtime" --action-cache none \
	>"$work/daemon.out" 2>"$work/daemon.err" &
daemon=$!
while ! grep -q '^listening' "$work/daemon.out"; do sleep 0.05; done

# A bundle of the same shape for bare runc: take the config of a kept bundle.
"$kiln" run --build-service-addr "oci://$work/shape?keep-failed=1" --bin-sh \
	--input input=README.md --output out -- /bin/sh -c false >/dev/null 2>&1 || true
src=$(ls -d "$work"/shape/*-*-*-*-*)
bundle=$work/bare
mkdir -p "$bundle/root/etc" "$bundle/inputs/input" "$bundle/scratch"
cp "$src/config.json" "$bundle/"
cp "$src"/root/etc/* "$bundle/root/etc/"
cp -a "$src"/scratch/* "$bundle/scratch/"
/usr/bin/python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/sh", "-c", ":"]
json.dump(c, open(p, "w"))
PY

runc_cmd="runc --root $work/runc-state run --bundle $bundle bench-@I@"
[ "$runtime" = crun ] && runc_cmd="unshare -m sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; \
exec crun --root $work/crun-state run --bundle $bundle bench-@I@'"
nix_cmd="nix-build --no-out-link --option build-users-group '' --option sandbox true \
--option sandbox-fallback false --option sandbox-paths /bin/sh=/bin/busybox --option substituters '' \
-E 'derivation { name = \"t\"; salt = \"$$-@I@\"; system = builtins.currentSystem; \
builder = \"/bin/sh\"; args = [\"-c\" \": > \$out\"]; }'"
set -- "$runc_cmd"
command -v nix-build >/dev/null && set -- "$runc_cmd" "$nix_cmd"
/usr/bin/python3 bench/build_trivial.py "unix:$work/kiln.sock" "$PWD/proto" "$work/py" "$runs" "$@" \
	>"$work/times"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
k=$(cut -d' ' -f1 "$work/times" | median)
r=$(cut -d' ' -f2 "$work/times" | median)
printf 'kiln daemon DoBuild   %.1f ms\n' "$(awk "BEGIN{print $k*1000}")"
printf "bare $runtime run         %.1f ms   kiln/$runtime = %.2fx\n" "$(awk "BEGIN{print $r*1000}")" \
	"$(awk "BEGIN{print $k/$r}")"
if [ $# = 2 ]; then
	n=$(cut -d' ' -f3 "$work/times" | median)
	printf 'sandboxed nix-build   %.1f ms   kiln/nix  = %.2fx\n' "$(awk "BEGIN{print $n*1000}")" \
		"$(awk "BEGIN{print $k/$n}")"
fi
