#!/bin/sh
# Nix derivations (run by hand), two rows:
# 1. a chain of N trivial derivations (each cats its predecessor), built from a
#    cold start by a sandboxed `nix-build` into a chroot store of its own, and
#    by `kiln nix build` for /nix/store (the embedded store, kiln's sandbox);
#    both see the same .drv files, salted anew each run so nothing is cached;
# 2. the input side: a derivation over a 1 GiB input closure, its first build
#    (the input imported into castore) and a second one over the same input
#    (remembered in the PathInfo store).
# Prints medians of RUNS runs and the ratio. usage: bench/nix_chain.sh [RUNS] [N]
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-30}
kiln=$PWD/build/kiln
work=$(mktemp -d /var/tmp/kiln-bench-nix.XXXXXX)
chmod 711 "$work"
created=$work/created
trap 'nix-store --delete $(cat "$created" 2>/dev/null) >/dev/null 2>&1; rm -rf "$work"' EXIT
export KILN_HOME=$work/home
mkdir "$work/bb"
cp "$(command -v busybox)" "$work/bb/busybox"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
cat >"$work/chain.nix" <<NIX
{ salt, n, big ? null }:
let
  bb = builtins.path { path = $work/bb; name = "bb"; };
  step = i: prev: derivation {
    name = "chain-\${toString i}"; inherit salt;
    system = builtins.currentSystem; builder = "\${bb}/busybox";
    args = [ "sh" "-c" ("\${bb}/busybox " + (if prev == null then "echo 0 > \$out"
      else "cat \${prev} > \$out; echo \${toString i} >> \$out")) ];
  };
  go = i: prev: if i > n then prev else go (i + 1) (step i prev);
  withBig = derivation {
    name = "over-big"; inherit salt; system = builtins.currentSystem;
    builder = "\${bb}/busybox"; args = [ "sh" "-c" "\${bb}/busybox ls \${big} > \$out" ];
  };
in if big == null then go 1 null else withBig
NIX
nix_t=""; kiln_t=""
for i in $(seq "$runs"); do
        salt="bench-$$-$i-$(date +%N)"
        drv=$(nix-instantiate --argstr salt "$salt" --arg n "$n" "$work/chain.nix" 2>/dev/null)
        nix-store -qR "$drv" 2>/dev/null | grep '\.drv$' >>"$created"
        rm -rf "$work/nixstore"
        nix-instantiate --store "$work/nixstore" --argstr salt "$salt" --arg n "$n" \
                "$work/chain.nix" >/dev/null 2>&1
        t0=$(now)
        nix-build --store "$work/nixstore" --option build-users-group '' --option substituters '' \
                --option sandbox true --no-out-link "$drv" >/dev/null 2>"$work/nix.err" ||
                { cat "$work/nix.err" >&2; exit 1; }
        t1=$(now)
        "$kiln" nix build "$drv" >>"$created" 2>"$work/kiln.err" ||
                { cat "$work/kiln.err" >&2; exit 1; }
        t2=$(now)
        nix-store -qR "$drv" 2>/dev/null | grep -v '\.drv$' >>"$created"
        nix_t="$nix_t $(echo "$t1 - $t0" | bc)"
        kiln_t="$kiln_t $(echo "$t2 - $t1" | bc)"
done
nm=$(echo $nix_t | tr ' ' '\n' | median)
km=$(echo $kiln_t | tr ' ' '\n' | median)
echo "chain of $n derivations, cold: nix-build ${nm}s ($(echo "$nm * 1000 / $n" | bc) ms each), kiln nix build ${km}s ($(echo "$km * 1000 / $n" | bc) ms each): $(echo "scale=2; $km / $nm" | bc)x"

# --- 2. a 1 GiB input closure
mkdir "$work/big"
for f in $(seq 16); do head -c 64M /dev/urandom >"$work/big/f$f"; done
big=$(nix-store --add "$work/big" 2>/dev/null)
echo "$big" >>"$created"
d1=$(nix-instantiate --argstr salt "big-1-$$" --arg n 0 --arg big "$big" "$work/chain.nix" 2>/dev/null)
d2=$(nix-instantiate --argstr salt "big-2-$$" --arg n 0 --arg big "$big" "$work/chain.nix" 2>/dev/null)
echo "$d1 $d2" >>"$created"
t0=$(now); "$kiln" nix build "$d1" >>"$created" 2>/dev/null; t1=$(now)
"$kiln" nix build "$d2" >>"$created" 2>/dev/null; t2=$(now)
echo "over a 1 GiB input: first build $(echo "$t1 - $t0" | bc)s (import), second $(echo "$t2 - $t1" | bc)s (remembered)"
