#!/bin/sh
# kiln's Nix data model against the real Nix (Debian's nix-bin, 2.8), run
# side by side: Nix instantiates derivations into a chroot store of the
# test's own, and kiln must print, hash and serialise exactly what Nix does.
. "$(dirname "$0")/lib.sh"
command -v nix-instantiate >/dev/null || fail "nix-bin is not installed"
: "${KILN_FIXTURES:?}"
store=$T/store
nixx() { nix --extra-experimental-features nix-command --store "$store" "$@" 2>"$T/nix.err"; }

# derivations: multiple outputs, fixed outputs (flat, recursive), a source
# path, passAsFile, awkward strings; and the closure of the top one
cp "$KILN_FIXTURES/nix/derivations.nix" "$T/d.nix"
mkdir -p "$T/src/sub" && echo hi >"$T/src/a" && printf '#!/bin/sh\n' >"$T/src/sub/x"
chmod +x "$T/src/sub/x" && ln -s ../a "$T/src/sub/l" && : >"$T/src/empty"
top=$(nix-instantiate --store "$store" "$T/d.nix" 2>"$T/nix.err") || { cat "$T/nix.err" >&2; fail "nix-instantiate"; }
local_top=$store$top

nixx show-derivation -r "$top" >"$T/nix.json" || { cat "$T/nix.err" >&2; fail "nix show-derivation"; }
kiln nix show-derivation -r "$local_top" >"$T/kiln.json"
cmp -s "$T/nix.json" "$T/kiln.json" || { diff "$T/nix.json" "$T/kiln.json" >&2 || true; fail "show-derivation -r differs from Nix's"; }

n=0
for drv in "$store"/nix/store/*.drv; do
	n=$((n + 1))
	# the printer gives back the bytes Nix wrote
	kiln nix print-derivation "$drv" >"$T/printed"
	cmp -s "$drv" "$T/printed" || fail "print-derivation of $drv differs from the file"
	# output paths and the .drv path as Nix computed them (checked by the verb)
	kiln nix hash-derivation "$drv" >"$T/hash.json" || fail "hash-derivation of $drv"
	want=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); k="/nix/store/"+sys.argv[2]
print(json.dumps({o: v.get("path") for o, v in d[k]["outputs"].items()}, sort_keys=True))' \
		"$T/nix.json" "$(basename "$drv")")
	got=$(json outputs <"$T/hash.json" | $PY -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))')
	[ "$got" = "$want" ] || fail "output paths of $drv: kiln $got, nix $want"
done
[ $n = 4 ] || fail "expected 4 derivations in the chroot store, found $n"

# NAR: the bytes of nix-store --dump, the hashes Nix prints
nix-store --dump "$T/src" >"$T/nix.nar"
kiln nix dump-path "$T/src" >"$T/kiln.nar"
cmp -s "$T/nix.nar" "$T/kiln.nar" || fail "dump-path differs from nix-store --dump"
for f in sri base32 base16; do
	case $f in sri) nf="" ;; *) nf="--$f" ;; esac
	want=$(nix --extra-experimental-features nix-command hash path --type sha256 $nf "$T/src")
	got=$(kiln nix nar-hash --$f "$T/src")
	[ "$got" = "$want" ] || fail "nar-hash --$f: kiln $got, nix $want"
done
# the source path Nix added to its store, and its recorded hash
srcpath=$(ls -d "$store"/nix/store/*-src)
want=$(nix-store --store "$store" -q --hash "/nix/store/$(basename "$srcpath")" 2>"$T/nix.err")
[ "$(kiln nix nar-hash "$srcpath")" = "$want" ] || fail "nar-hash of the store's src: want $want"

# a NAR read into the castore and written back is the same NAR
out=$(kiln nix import-nar "$T/nix.nar")
[ "$(echo "$out" | json narHash)" = "$(kiln nix nar-hash "$T/src")" ] || fail "import-nar narHash: $out"
[ "$(echo "$out" | json narSize)" = "$(stat -c %s "$T/nix.nar")" ] || fail "import-nar narSize: $out"
kiln nix dump-path --node "$(echo "$out" | json node)" >"$T/again.nar"
cmp -s "$T/nix.nar" "$T/again.nar" || fail "dump-path --node of the imported NAR differs"
# a NAR Nix would not write is refused, and nothing is printed
head -c 200 "$T/nix.nar" >"$T/cut.nar"
expect_fail "invalid NAR at byte 200" kiln nix import-nar "$T/cut.nar"
echo ok
