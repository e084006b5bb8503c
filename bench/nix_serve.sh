#!/bin/bash
# Nix remote builders (run by hand): the chain of N trivial derivations of
# bench/nix_chain.sh (each cats its predecessor), built by Nix 2.8's
# `nix-build --max-jobs 0` into a chroot store, so that every derivation is
# offloaded through the build hook over a real sshd on 127.0.0.1 (started
# here, as in tests/integration/nix_serve.sh) to
#   kiln: `kiln nix serve` on a KILN_HOME of its own (kiln's sandbox) where
#         `kiln nix serve --listen` runs, so each session is relayed to it
#         (stores and build service open, warm),
#   cold: the same without the listener (each session a new kiln-core), or
#   nix:  `nix-store --serve --write` on a chroot store of its own
#         (sandboxed builds), so client and builder share no store;
# then the last chain once more to kiln, which now holds every output and
# answers each build at once: what is left is the client's own work (the
# floor no builder can go below).
# Second, the builders' side alone (bench/nix_serve_sessions.py): N
# one-derivation sessions as the build hook speaks them, straight to each
# remote program (no ssh, no client Nix), sides interleaved per session:
# the medians and kiln/nix. RUNS=0 gives only this part.
# Both builders keep a master SSH connection (ControlMaster/ControlPersist in
# NIX_SSHOPTS) and their store across runs, as a builder does; every run has
# a new salt and a new client store, so each run builds all N derivations on
# the builder. Runs
# are paired (alternating which goes first); the last output of each pair
# must be the same on both sides. Prints the medians and kiln/nix.
# Every offloaded derivation opens an ssh session, which sshd runs through
# the builder user's login shell: bash sources ~/.bashrc for it, so a heavy
# rc file (pyenv init: 0.55 s here) is paid per derivation by both builders
# alike and drowns the difference. The script prints what a session costs.
# usage: bench/nix_serve.sh [RUNS] [N]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-30}
export KILN_BIN=${KILN_BIN:-$PWD/build/kiln}
[ -x "$KILN_BIN" ] || { echo "build kiln first (ninja -C build)" >&2; exit 1; }
TMPDIR=/var/tmp
. tests/integration/lib.sh
. tests/integration/sshd_lib.sh
[ "$(id -u)" = 0 ] || fail "needs root (sshd, chroot stores, builds)"
# a copy of the binaries, so a rebuild meanwhile does not change what is measured
mkdir "$T/bin"
cp "$(dirname "$KILN_BIN")"/kiln "$(dirname "$KILN_BIN")"/kiln-core "$(dirname "$KILN_BIN")"/kiln-sandbox "$T/bin/"
KILN_BIN=$T/bin/kiln
start_sshd "$T/ssh" -o ControlMaster=auto -o "ControlPath=$T/ssh/cm-%C" -o ControlPersist=600
# shellcheck disable=SC2086
cleanup_hooks="ssh $NIX_SSHOPTS -O exit root@127.0.0.1 2>/dev/null || true; $cleanup_hooks"
# shellcheck disable=SC2086
ssh $NIX_SSHOPTS -i "$SSH_KEY" root@127.0.0.1 true # the master connection
for _ in 1 2 3; do
	t0=$(date +%s%N)
	# shellcheck disable=SC2086
	ssh $NIX_SSHOPTS -i "$SSH_KEY" root@127.0.0.1 true
	echo $((($(date +%s%N) - t0) / 1000000))
done | sort -n | sed -n 2p >"$T/session_ms"
echo "an ssh session over the master connection (the builder's login shell and its rc files): $(cat "$T/session_ms") ms" >&2

mkdir "$T/bb"
cp "$(command -v busybox)" "$T/bb/busybox"
cat >"$T/chain.nix" <<NIX
{ salt, n }:
let
  bb = builtins.path { path = $T/bb; name = "bb"; };
  step = i: prev: derivation {
    name = "chain-\${toString i}"; inherit salt;
    system = builtins.currentSystem; builder = "\${bb}/busybox";
    args = [ "sh" "-c" ("\${bb}/busybox " + (if prev == null then "echo 0 > \$out"
      else "cat \${prev} > \$out; echo \${toString i} >> \$out")) ];
  };
  go = i: prev: if i > n then prev else go (i + 1) (step i prev);
in go 1 null
NIX
common=(--option build-users-group '' --option substituters '' --option sandbox true)
cat >"$T/kiln-serve" <<W
#!/bin/sh
exec "$KILN_BIN" nix serve --home "\$BENCH_HOME" "\$@" 2>>"\$BENCH_HOME.log"
W
cat >"$T/nix-serve" <<W
#!/bin/sh
exec nix-store --store "\$BENCH_HOME" --option build-users-group '' --option substituters '' \\
	--option sandbox true "\$@" 2>>"\$BENCH_HOME.log"
W
chmod 755 "$T/kiln-serve" "$T/nix-serve"
# sshd gives the remote program no environment of ours: the home is in the URL's
# program, through a per-run wrapper
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run SIDE I SALT: one cold offloaded build of the chain; prints seconds
run() {
	local side=$1 i=$2 salt=$3 home=$T/$1-home client=$T/$1-client-$2
	local wrapper=$T/$side-serve
	[ "$side" = nix ] || wrapper=$T/kiln-serve
	printf '#!/bin/sh\nBENCH_HOME=%s exec %s "$@"\n' "$home" "$wrapper" >"$T/$side-$i"
	chmod 755 "$T/$side-$i"
	local remote="ssh://root@127.0.0.1?remote-program=$T/$side-$i&ssh-key=$SSH_KEY"
	nix-instantiate --store "$client" "${common[@]}" --argstr salt "$salt" --arg n "$n" \
		"$T/chain.nix" >"$T/$side-$i.drv" 2>/dev/null
	local t0 t1
	t0=$(now)
	nix-build --store "$client" "${common[@]}" --no-out-link --max-jobs 0 \
		--builders "$remote x86_64-linux - 1 1" --option builders-use-substitutes false \
		"$(cat "$T/$side-$i.drv")" >"$T/$side-$i.out" 2>"$T/$side-$i.err" ||
		{ tail -n 20 "$T/$side-$i.err" "$home.log" >&2; fail "$side: offloaded nix-build failed"; }
	t1=$(now)
	local built
	built=$(grep -c "^building '.*' on 'ssh://" "$T/$side-$i.err" || true)
	[ "$built" = "$n" ] || { tail "$T/$side-$i.err" >&2; fail "$side: $built of $n derivations offloaded"; }
	# the builder holds the last output, and the client a valid copy
	local out
	out=$(cat "$T/$side-$i.out")
	if [ "$side" != nix ]; then
		KILN_HOME=$home "$KILN_BIN" nix path-info "$out" >/dev/null || fail "kiln does not hold $out"
	else
		nix-store --store "$home" "${common[@]}" -q --hash "$out" >/dev/null || fail "the Nix builder does not hold $out"
	fi
	nix-store --store "$client" "${common[@]}" --verify-path "$out" || fail "$side: $out is not valid"
	[ "$(wc -l <"$client$out")" = "$n" ] || fail "$side: $out has the wrong contents"
	echo "$t1 - $t0" | bc
}

mkdir "$T/kiln-home"
: >"$T/listen.out"
"$KILN_BIN" nix serve --listen --home "$T/kiln-home" >"$T/listen.out" 2>"$T/listen.err" &
cleanup_hooks="kill $! 2>/dev/null || true; $cleanup_hooks"
until grep -q "^listening on" "$T/listen.out"; do sleep 0.1; done

kiln_t=""; cold_t=""; nix_t=""; kiln_r=""; cold_r=""
for i in $(seq "$runs"); do
	salt="bench-serve-$$-$i-$(date +%N)"
	# the order rotates: each side goes first once every three runs
	case $((i % 3)) in
	1) k=$(run kiln "$i" "$salt"); c=$(run cold "$i" "$salt"); x=$(run nix "$i" "$salt") ;;
	2) x=$(run nix "$i" "$salt"); k=$(run kiln "$i" "$salt"); c=$(run cold "$i" "$salt") ;;
	0) c=$(run cold "$i" "$salt"); x=$(run nix "$i" "$salt"); k=$(run kiln "$i" "$salt") ;;
	esac
	o=$(cat "$T/nix-$i.out")
	for side in kiln cold; do
		[ "$(cat "$T/$side-$i.out")" = "$o" ] || fail "$side and nix built other paths"
		[ "$(nix-store --store "$T/$side-client-$i" "${common[@]}" -q --hash "$o")" = \
		  "$(nix-store --store "$T/nix-client-$i" "${common[@]}" -q --hash "$o")" ] ||
			fail "the outputs of $side and nix differ"
	done
	echo "run $i: kiln ${k}s, kiln without listener ${c}s, nix ${x}s" >&2
	kiln_t="$kiln_t $k"; cold_t="$cold_t $c"; nix_t="$nix_t $x"
	kiln_r="$kiln_r $(echo "scale=3; $k / $x" | bc)"; cold_r="$cold_r $(echo "scale=3; $c / $x" | bc)"
	rm -rf "$T/kiln-client-$i" "$T/cold-client-$i" "$T/nix-client-$i"
done
if [ "$runs" -gt 0 ]; then
# The client's own floor: the last chain again, to a builder that already
# holds every output (it answers each build at once), from a new client store.
floor=$(run kiln again "$salt")
km=$(echo $kiln_t | tr ' ' '\n' | median)
cm=$(echo $cold_t | tr ' ' '\n' | median)
nm=$(echo $nix_t | tr ' ' '\n' | median)
each() { echo "$1 * 1000 / $n" | bc; }
# the ratio of the medians, and the median of each run's ratio (which a
# machine whose load drifts between runs disturbs less)
krm=$(echo $kiln_r | tr ' ' '\n' | median)
crm=$(echo $cold_r | tr ' ' '\n' | median)
echo "chain of $n derivations offloaded over ssh, median of $runs runs:"
echo "  kiln nix serve (--listen)    ${km}s ($(each "$km") ms each): $(echo "scale=2; $km / $nm" | bc)x nix (median of run ratios ${krm}x)"
echo "  kiln nix serve (no listener) ${cm}s ($(each "$cm") ms each): $(echo "scale=2; $cm / $nm" | bc)x nix (median of run ratios ${crm}x)"
echo "  nix-store --serve            ${nm}s ($(each "$nm") ms each)"
echo "  the client's floor (kiln already holds every output) ${floor}s ($(each "$floor") ms each): $(echo "scale=2; $floor / $nm" | bc)x nix"
fi

# --- 2. the builders' side alone
cat >"$T/one.nix" <<NIX
{ salt }: import $T/chain.nix { inherit salt; n = 1; }
NIX
for j in $(seq "$n"); do
	nix-instantiate --store "$T/sess" "${common[@]}" --argstr salt "sess-$$-$j-$(date +%N)" \
		"$T/one.nix" 2>/dev/null
done >"$T/sess.drvs"
nix --extra-experimental-features nix-command show-derivation --store "$T/sess" "${common[@]}" \
	$(cat "$T/sess.drvs") >"$T/sess.json" 2>/dev/null
bb=$(nix-store --store "$T/sess" "${common[@]}" -qR "$(head -1 "$T/sess.drvs")" 2>/dev/null | grep -- '-bb$')
nix-store --dump "$T/sess$bb" >"$T/bb.nar"
printf '#!/bin/sh\nBENCH_HOME=%s exec %s "$@"\n' "$T/kiln-home" "$T/kiln-serve" >"$T/kiln-s"
printf '#!/bin/sh\nBENCH_HOME=%s exec %s "$@"\n' "$T/cold-s-home" "$T/kiln-serve" >"$T/cold-s"
printf '#!/bin/sh\nBENCH_HOME=%s exec %s "$@"\n' "$T/nix-s-store" "$T/nix-serve" >"$T/nix-s"
chmod 755 "$T/kiln-s" "$T/cold-s" "$T/nix-s"
medians=$($PY bench/nix_serve_sessions.py "$T/sess.json" "$bb" "$T/bb.nar" \
	-- "$T/kiln-s" -- "$T/cold-s" -- "$T/nix-s") || fail "the sessions failed"
set -- $medians
echo "the builder's side alone, $n one-derivation sessions (median):"
echo "  kiln nix serve (--listen)    $1 ms: $(echo "scale=2; $1 / $3" | bc)x nix"
echo "  kiln nix serve (no listener) $2 ms: $(echo "scale=2; $2 / $3" | bc)x nix"
echo "  nix-store --serve            $3 ms"
