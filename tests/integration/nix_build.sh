#!/bin/bash
# kiln nix build against Nix 2.8 itself: every derivation of
# tests/fixtures/nix/builds.nix is built by nix-build into a chroot store of
# its own and by kiln for /nix/store; their outputs must have the same paths,
# NAR hashes, references and content addresses, kiln's must pass
# nix-store --verify-path, and the failures must fail alike.
. "$(dirname "$0")/lib.sh"

command -v nix-build >/dev/null || fail "nix-bin is not installed"
fixture=$KILN_FIXTURES/nix/builds.nix
mkdir "$T/bb"
cp "$(command -v busybox)" "$T/bb/busybox"
salt="kiln-test-$$-$RANDOM$RANDOM"

# The recursive fixed output's hash: the NAR of the tree its builder makes.
mkdir -p "$T/rec/sub"
echo rec >"$T/rec/sub/file"
ln -s sub/file "$T/rec/link"
rec_hash=$(nix-hash --type sha256 --base32 "$T/rec")

nixargs=(--argstr salt "$salt" --argstr recHash "$rec_hash" --arg bbDir "$T/bb")
good=(hello multi chain1 chain2 chain3 selfref symlinks exec emptydirs oddnames passfile
        structured environment sandboxview withsrc usesdev uselib big placeholders diamond
        fodflat fodsha1 fodsha512 fodrec)
bad=(fodwrong failing)
q() { nix-store "$@" 2>"$T/nix.err"; }

drvs=()
for a in "${good[@]}" "${bad[@]}"; do
        d=$(nix-instantiate "${nixargs[@]}" -A "$a" "$fixture" 2>"$T/nix.err") ||
                { cat "$T/nix.err" >&2; fail "nix-instantiate -A $a"; }
        drvs+=("$d")
        eval "drv_$a=$d"
done
cleanup_hooks="nix-store --delete \$(cat \"\$T/created\" 2>/dev/null) >/dev/null 2>&1 || true; $cleanup_hooks"
printf '%s\n' "${drvs[@]}" >"$T/created"

# Nix: one nix-build of everything that should work, into its own store.
nixstore=$T/nixstore
nixbuild() {
        nix-build --store "$nixstore" --option build-users-group '' --option substituters '' \
                --option sandbox true --no-out-link "${nixargs[@]}" "$@" "$fixture"
}
all_a=(); for a in "${good[@]}"; do all_a+=(-A "$a"); done
nix_outs=$(nixbuild "${all_a[@]}" 2>"$T/nixbuild.err") ||
        { tail -20 "$T/nixbuild.err" >&2; fail "nix-build failed"; }

# kiln: the same derivations, by their .drv paths.
good_drvs=(); for a in "${good[@]}"; do eval "good_drvs+=(\$drv_$a)"; done
kiln_outs=$(kiln nix build "${good_drvs[@]}" 2>"$T/kiln.err") ||
        { cat "$T/kiln.err" >&2; fail "kiln nix build failed"; }
printf '%s\n' $kiln_outs >>"$T/created"
# kiln prints every output of each .drv, as nix-build DRV does; nix-build -A
# printed the default ones.
want_outs=$(for d in "${good_drvs[@]}"; do nix-store -q --outputs "$d" 2>/dev/null; done)
[ "$(echo "$want_outs" | sort)" = "$(echo "$kiln_outs" | sort)" ] ||
        fail "output paths differ: want: $(echo $want_outs) kiln: $(echo $kiln_outs)"
for o in $nix_outs; do echo "$kiln_outs" | grep -qx "$o" || fail "nix built $o, kiln did not"; done
grep -q "^building '$drv_hello'" "$T/kiln.err" || fail "kiln did not say what it built"

n=0
for o in $kiln_outs; do
        want=$(q --store "$nixstore" -q --hash "$o") || fail "nix has no hash of $o"
        got=$(q -q --hash "$o") || fail "kiln's $o is not valid in /nix/store: $(cat "$T/nix.err")"
        [ "$got" = "$want" ] || {
                diff -r "$nixstore$o" "$o" >&2 || true
                fail "NAR hash of $o: kiln $got, nix $want"
        }
        q --verify-path "$o" || fail "nix-store --verify-path $o: $(cat "$T/nix.err")"
        [ "$(q -q --references "$o" | sort)" = "$(q --store "$nixstore" -q --references "$o" | sort)" ] ||
                fail "references of $o differ"
        [ "$(q -q --deriver "$o")" = "$(q --store "$nixstore" -q --deriver "$o")" ] ||
                fail "deriver of $o differs"
        n=$((n + 1))
done
[ "$n" -ge 25 ] || fail "only $n outputs compared"

# Content addresses of the fixed outputs, as Nix registers them.
ca() {
        nix --extra-experimental-features nix-command path-info --json "$@" "$1" 2>/dev/null |
                $PY -c 'import json,sys; print(json.load(sys.stdin)[0].get("ca"))'
}
for a in fodflat fodsha1 fodsha512 fodrec; do
        eval "o=\$(nix-store -q --outputs \$drv_$a 2>/dev/null)"
        want=$(ca "$o" --store "$nixstore")
        got=$(ca "$o")
        [ "$got" = "$want" ] && [ "$got" != None ] || fail "CA of $a: kiln $got, nix $want"
done
# Self-references, references between outputs and to inputs.
o=$(nix-store -q --outputs "$drv_selfref" 2>/dev/null)
q -q --references "$o" | grep -qx "$o" || fail "selfref does not refer to itself"
o=$(nix-store -q --outputs "$drv_usesdev" 2>/dev/null)
q -q --references "$o" | grep -q -- '-multi-lib$' || fail "usesdev lost its reference to multi.lib"
# What kiln remembers: the PathInfo store has the outputs and their inputs.
kiln nix path-info --json "$o" | grep -q '"deriver": *"'"$drv_usesdev"'"' ||
        kiln nix path-info --json "$o" | grep -q "$drv_usesdev" || fail "kiln nix path-info lacks $o"

# Failures, as Nix reports them.
expect_fail "hash mismatch in fixed-output derivation '$drv_fodwrong'" kiln nix build "$drv_fodwrong"
kiln_msg=$(grep -A2 'hash mismatch' "$T/.stderr" | sed 's/^kiln: //')
nixbuild -A fodwrong >/dev/null 2>"$T/nixwrong.err" && fail "nix-build of fodwrong worked"
for line in "specified: sha256-" "got:    sha256-"; do
        k=$(echo "$kiln_msg" | grep -o "$line.*")
        n2=$(grep -o "$line.*" "$T/nixwrong.err" | head -1)
        [ -n "$k" ] && [ "$k" = "$n2" ] || fail "hash mismatch line '$line': kiln '$k', nix '$n2'"
done
o=$(nix-store -q --outputs "$drv_fodwrong" 2>/dev/null)
! nix-store -q --hash "$o" >/dev/null 2>&1 || fail "the mismatching output was registered"
expect_fail "builder for '$drv_failing' failed" kiln nix build "$drv_failing"
grep -q '^failing> about to fail$' "$T/.stderr" || fail "the failing build's log was not shown live"
grep -A3 'builder for' "$T/.stderr" | grep -qx 'about to fail' || fail "the failing build's log tail is missing"
expect_fail "builder for '$drv_failing' failed" kiln nix build -Q "$drv_failing"
! grep -q '^failing> ' "$T/.stderr" || fail "-Q showed the build log"
expect_fail "note: keeping build directory" kiln nix build -K -Q "$drv_failing"
kept=$(sed -n "s/.*note: keeping build directory '\([^']*\)'.*/\1/p" "$T/.stderr" | head -1)
[ -e "$kept/kept-failed" ] || { cat "$T/.stderr" >&2; fail "kiln nix build -K kept no bundle"; }
grep -q "about to fail" "$kept/stdout.log" "$kept/stderr.log" || fail "the kept bundle has no build log"
umount "$kept/scratch" 2>/dev/null || true
rm -rf "$kept"
expect_fail "is not a /nix/store/...drv path" kiln nix build /tmp/nothing.drv

# A second build over the same inputs imports nothing again.
grep -q "importing '/nix/store/[a-z0-9]*-bb'" "$T/kiln.err" || fail "the first build imported no input"
d2=$(nix-instantiate "${nixargs[@]}" --argstr salt "$salt-again" -A hello "$fixture" 2>/dev/null)
echo "$d2" >>"$T/created"
kiln nix build "$d2" >/dev/null 2>"$T/kiln2.err" || { cat "$T/kiln2.err" >&2; fail "second build"; }
! grep -q "importing" "$T/kiln2.err" || fail "the second build imported again: $(grep importing "$T/kiln2.err")"
nix-store -q --outputs "$d2" >>"$T/created" 2>/dev/null
# Built already: nothing is built, the outputs are printed.
[ "$(kiln nix build "$d2" 2>"$T/kiln3.err")" = "$(nix-store -q --outputs "$d2" 2>/dev/null)" ] ||
        fail "a valid derivation did not print its output"
! grep -q building "$T/kiln3.err" || fail "a valid derivation was built again"
# --json: each build's events with its derivation, then the outputs; a
# failure's last event is Failed with its log tail
d3=$(nix-instantiate "${nixargs[@]}" --argstr salt "$salt-json" -A hello "$fixture" 2>/dev/null)
echo "$d3" >>"$T/created"
kiln nix build --json "$d3" >"$T/json.out" 2>"$T/json.err" || { cat "$T/json.err" >&2; fail "kiln nix build --json"; }
nix-store -q --outputs "$d3" >>"$T/created" 2>/dev/null
$PY - "$T/json.out" "$d3" "$(nix-store -q --outputs "$d3")" <<'PY' || fail "kiln nix build --json: $(cat "$T/json.out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
events = [l for l in lines if "drv" in l]
assert events and all(e["drv"] == sys.argv[2] for e in events), events
kinds = [next(k for k in e if k != "drv") for e in events]
assert "started" in kinds and kinds[-1] == "completed", kinds
assert lines[-1] == {"outputs": [sys.argv[3]]}, lines[-1]
PY
expect_fail "builder for '$drv_failing' failed" kiln nix build --json "$drv_failing"
tail -1 "$T/.stdout" | grep -q '"failed"' || fail "--json of a failure: $(tail -2 "$T/.stdout")"
grep -q '"drv"' "$T/.stdout" || fail "--json of a failure names no derivation"

# --repeat N: N more builds past every cache, each compared with the first;
# an output that differs fails the derivation in Nix's words, unrecorded.
repeat_nix=$KILN_FIXTURES/nix/repeat.nix
dr=$(nix-instantiate --argstr salt "$salt-repeat" --arg random true --arg bbDir "$T/bb" "$repeat_nix" 2>/dev/null)
dd=$(nix-instantiate --argstr salt "$salt-repeat" --arg random false --arg bbDir "$T/bb" "$repeat_nix" 2>/dev/null)
echo "$dr" >>"$T/created"
echo "$dd" >>"$T/created"
o=$(nix-store -q --outputs "$dr" 2>/dev/null)
expect_fail "derivation '$dr' may not be deterministic: output '$o' differs" kiln nix build --repeat 1 "$dr"
! nix-store -q --hash "$o" >/dev/null 2>&1 || fail "the output of a differing repeat was registered"
kiln nix build --repeat 2 "$dd" >/dev/null 2>"$T/repeat.err" || { cat "$T/repeat.err" >&2; fail "--repeat 2 of a deterministic build"; }
[ "$(grep -c "repeating the build of '$dd'" "$T/repeat.err")" = 2 ] || fail "--repeat 2 did not build twice more: $(cat "$T/repeat.err")"
nix-store -q --outputs "$dd" >>"$T/created" 2>/dev/null
expect_fail "invalid --repeat '0'" kiln nix build --repeat 0 "$dd"

echo "nix build: $n outputs equal to Nix's, fixed-output CAs equal, failures alike"
