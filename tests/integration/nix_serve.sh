#!/bin/bash
# kiln nix serve as a Nix remote builder: Debian's Nix 2.8 reaches it through
# a real sshd on 127.0.0.1 (started here with keys made here, stopped on
# exit). First the store side through nix-store --store ssh:// (copy a path
# in, query it, dump it back); then nix-build --max-jobs 0 offloads
# derivations of tests/fixtures/nix/builds.nix to kiln, and each output that
# comes back must have the NAR hash and references of a plain local
# nix-build of the same derivation into another store.
. "$(dirname "$0")/lib.sh"

command -v nix-build >/dev/null || fail "nix-bin is not installed"
[ -x /usr/sbin/sshd ] || fail "openssh-server is not installed"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (sshd, chroot stores, builds)"; exit 77; }
fixture=$KILN_FIXTURES/nix/builds.nix
mkdir "$T/bb"
cp "$(command -v busybox)" "$T/bb/busybox"
salt="kiln-serve-$$-$RANDOM$RANDOM"
mkdir -p "$T/rec/sub"
echo rec >"$T/rec/sub/file"
ln -s sub/file "$T/rec/link"
rec_hash=$(nix-hash --type sha256 --base32 "$T/rec")
nixargs=(--argstr salt "$salt" --argstr recHash "$rec_hash" --arg bbDir "$T/bb")

# --- sshd on a free loopback port, only our key ---
. "$(dirname "$0")/sshd_lib.sh"
start_sshd "$T/ssh"

# The remote program: kiln nix serve on a KILN_HOME of the test's.
khome=$T/builder
cat >"$T/kiln-serve" <<W
#!/bin/sh
echo \$\$ >>"$T/serve.pids"
exec "$KILN_BIN" nix serve --home "$khome" "\$@" 2>>"$T/serve.log"
W
chmod 755 "$T/kiln-serve"
remote="ssh://root@127.0.0.1?remote-program=$T/kiln-serve&ssh-key=$S/id"

# --- the store side: nix copy in, query, dump back ---
local=$T/local
common=(--option build-users-group '' --option substituters '' --option sandbox true)
src=$(nix-store --store "$local" "${common[@]}" --add "$T/rec")
nix --extra-experimental-features nix-command copy --option build-users-group '' --store "$local" --to "$remote" "$src" \
        2>"$T/copy.err" || { cat "$T/copy.err" "$T/serve.log" >&2; fail "nix copy --to kiln"; }
kiln nix path-info --json "$src" >/dev/null 2>&1 || true
want=$(nix-store --store "$local" -q --hash "$src")
got=$(nix-store --store "$remote" -q --hash "$src" 2>"$T/q.err") ||
        { cat "$T/q.err" "$T/serve.log" >&2; fail "nix-store --store ssh:// -q --hash"; }
[ "$got" = "$want" ] || fail "NAR hash over serve: $got, want $want"
nix --extra-experimental-features nix-command store dump-path --store "$remote" "$src" \
        >"$T/dumped.nar" 2>"$T/q.err" ||
        { cat "$T/q.err" "$T/serve.log" >&2; fail "nix store dump-path --store ssh://"; }
[ "$(nix-hash --type sha256 --flat --base32 "$T/dumped.nar")" = "${want#sha256:}" ] ||
        fail "the NAR kiln dumped is not the path's"
# An unknown command: an error line and a non-zero exit.
printf '\xeb\x9d\x0c\x39\0\0\0\0\x07\x02\0\0\0\0\0\0\x63\0\0\0\0\0\0\0' |
        "$KILN_BIN" nix serve --home "$khome" >/dev/null 2>"$T/unk.err" &&
        fail "an unknown command did not fail"
grep -q "unknown serve command 99" "$T/unk.err" || fail "no message for an unknown command"
# Read-only without --write.
printf '\xeb\x9d\x0c\x39\0\0\0\0\x07\x02\0\0\0\0\0\0\x09\0\0\0\0\0\0\0' |
        "$KILN_BIN" nix serve --home "$khome" >/dev/null 2>"$T/ro.err" &&
        fail "adding a path without --write did not fail"
grep -q "not allowed" "$T/ro.err" || fail "no message for a read-only add"

# AddToStoreNar spoken directly: the right hash is recorded, a wrong hash or
# a path outside /nix/store is refused and leaves the store as it was.
printf 'direct\n' >"$T/direct"
nix-store --dump "$T/direct" >"$T/direct.nar"
add_msg() { # PATH HASH_HEX: a handshake and one AddToStoreNar of direct.nar
        $PY - "$1" "$2" "$T/direct.nar" <<'PYEOF'
import struct, sys
def u(n): return struct.pack('<Q', n)
def s(b):
    b = b.encode() if isinstance(b, str) else b
    return u(len(b)) + b + b'\0' * (-len(b) % 8)
nar = open(sys.argv[3], 'rb').read()
out = u(0x390c9deb) + u(0x207) + u(9) + s(sys.argv[1]) + s('') + s(sys.argv[2]) + u(0)
out += u(0) + u(len(nar)) + u(1) + u(0) + s('') + nar
sys.stdout.buffer.write(out)
PYEOF
}
good_hash=$(sha256sum "$T/direct.nar" | cut -d' ' -f1)
bad_hash=$(printf x | sha256sum | cut -d' ' -f1)
p1=/nix/store/00000000000000000000000000000000-direct-bad
add_msg "$p1" "$bad_hash" | "$KILN_BIN" nix serve --write --home "$khome" >/dev/null 2>"$T/bad.err" &&
        fail "a NAR with the wrong hash was accepted"
grep -q "hash mismatch importing path '$p1'" "$T/bad.err" || { cat "$T/bad.err" >&2; fail "no hash mismatch message"; }
KILN_HOME=$khome kiln nix path-info "$p1" >/dev/null 2>&1 && fail "$p1 was recorded after a hash mismatch"
add_msg /tmp/direct "$good_hash" | "$KILN_BIN" nix serve --write --home "$khome" >/dev/null 2>"$T/out.err" &&
        fail "a path outside the store was accepted"
grep -q "not in the Nix store" "$T/out.err" || { cat "$T/out.err" >&2; fail "no message for a path outside the store"; }
p2=/nix/store/11111111111111111111111111111111-direct-good
add_msg "$p2" "$good_hash" | "$KILN_BIN" nix serve --write --home "$khome" >"$T/good.out" 2>"$T/good.err" ||
        { cat "$T/good.err" >&2; fail "a NAR with the right hash was refused"; }
KILN_HOME=$khome kiln nix path-info "$p2" >/dev/null || fail "$p2 was not recorded"

# A connection that ends mid-NAR: refused, nothing recorded, the next add works.
p3=/nix/store/22222222222222222222222222222222-direct-cut
full=$(add_msg "$p3" "$good_hash" | wc -c)
add_msg "$p3" "$good_hash" | head -c $((full - 24)) |
        "$KILN_BIN" nix serve --write --home "$khome" >/dev/null 2>"$T/cut.err" &&
        fail "a NAR cut short was accepted"
grep -q "closed the connection\|truncated" "$T/cut.err" || { cat "$T/cut.err" >&2; fail "no message for a NAR cut short"; }
KILN_HOME=$khome kiln nix path-info "$p3" >/dev/null 2>&1 && fail "$p3 was recorded from a NAR cut short"
add_msg "$p3" "$good_hash" | "$KILN_BIN" nix serve --write --home "$khome" >/dev/null 2>"$T/cut.err" ||
        { cat "$T/cut.err" >&2; fail "the add after a cut connection failed"; }
# kiln keys paths by hash part: a second name for a held one is refused, and
# the held path keeps its record.
add_msg /nix/store/11111111111111111111111111111111-direct-other "$good_hash" |
        "$KILN_BIN" nix serve --write --home "$khome" >/dev/null 2>"$T/other.err" &&
        fail "a second name for a held hash part was accepted"
grep -q "the store holds '$p2', whose hash part is the same" "$T/other.err" ||
        { cat "$T/other.err" >&2; fail "no message for a second name of a hash part"; }
KILN_HOME=$khome kiln nix path-info "$p2" >/dev/null || fail "$p2 lost its record"

# ImportPaths and ExportPaths: the `nix-store --export` archive both ways.
hs() { printf '\xeb\x9d\x0c\x39\0\0\0\0\x07\x02\0\0\0\0\0\0'; }
direct=$(nix-store --store "$local" --add "$T/direct")
{ hs; printf '\x04\0\0\0\0\0\0\0'; nix-store --store "$local" --export "$src" "$direct"; } |
        "$KILN_BIN" nix serve --write --home "$T/imphome" >/dev/null 2>"$T/imp.err" ||
        { cat "$T/imp.err" >&2; fail "ImportPaths of nix-store --export failed"; }
KILN_HOME=$T/imphome kiln nix path-info --json "$src" >"$T/imp.json" || fail "ImportPaths did not record $src"
KILN_HOME=$T/imphome kiln nix path-info "$direct" >/dev/null ||
        fail "ImportPaths did not record the second path"
grep -q "$(nix-store --store "$local" -q --hash "$src" | cut -d: -f2)" "$T/imp.json" ||
        grep -q "$(nix-store --store "$local" -q --hash "$src")" "$T/imp.json" ||
        { cat "$T/imp.json" >&2; fail "ImportPaths recorded another NAR hash"; }
{ hs; $PY -c 'import struct,sys
p=sys.argv[1].encode()
sys.stdout.buffer.write(struct.pack("<QQQQ",5,0,1,len(p))+p+b"\0"*(-len(p)%8))' "$src"; } |
        "$KILN_BIN" nix serve --home "$T/imphome" 2>"$T/exp.err" | tail -c +17 >"$T/export" ||
        { cat "$T/exp.err" >&2; fail "ExportPaths failed"; }
nix-store --store "$T/impstore" --option build-users-group '' --import <"$T/export" >/dev/null 2>"$T/imp2.err" ||
        { cat "$T/imp2.err" >&2; fail "nix-store --import of kiln's export failed"; }
[ "$(nix-store --store "$T/impstore" -q --hash "$src")" = "$(nix-store --store "$local" -q --hash "$src")" ] ||
        fail "kiln's export gave another NAR"

# --- the build hook: everything offloaded to kiln ---
good=(hello multi chain1 chain2 chain3 selfref symlinks exec emptydirs oddnames passfile
        structured environment sandboxview withsrc usesdev uselib big placeholders diamond
        fodflat fodsha1 fodsha512 fodrec)
all_a=(); for a in "${good[@]}"; do all_a+=(-A "$a"); done
features=nixos-test,benchmark,big-parallel
outs=$(nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 2 1 $features" \
        --option builders-use-substitutes false "${nixargs[@]}" "${all_a[@]}" "$fixture" \
        2>"$T/offload.err") ||
        { tail -30 "$T/offload.err" >&2; tail -20 "$T/serve.log" >&2; fail "offloaded nix-build failed"; }
grep -q "building '/nix/store/.*-hello.drv' on '$remote'" "$T/offload.err" ||
        { tail -20 "$T/offload.err" >&2; fail "Nix did not say it built on kiln"; }

plain=$T/plain
want_outs=$(nix-build --store "$plain" "${common[@]}" --no-out-link "${nixargs[@]}" "${all_a[@]}" \
        "$fixture" 2>"$T/plain.err") || { tail -20 "$T/plain.err" >&2; fail "plain nix-build failed"; }
[ "$(echo "$outs" | sort)" = "$(echo "$want_outs" | sort)" ] || fail "output paths differ"

n=0
for o in $outs; do
        got=$(nix-store --store "$local" -q --hash "$o") || fail "$o is not valid locally"
        want=$(nix-store --store "$plain" -q --hash "$o")
        [ "$got" = "$want" ] || fail "NAR hash of $o: offloaded $got, local $want"
        [ "$(nix-store --store "$local" -q --references "$o" | sort)" = \
          "$(nix-store --store "$plain" -q --references "$o" | sort)" ] || fail "references of $o differ"
        nix-store --store "$local" --verify-path "$o" 2>/dev/null || fail "$o fails --verify-path"
        # kiln holds it too, from its own build
        kiln nix path-info --json "$o" >/dev/null 2>&1 || true
        n=$((n + 1))
done
[ "$n" -ge 15 ] || fail "only $n outputs compared"
nbuilt=$(grep -c "^building '" "$T/serve.log" || true)
[ "$nbuilt" -ge 15 ] || fail "kiln built only $nbuilt derivations"

# A failing build is reported as failed and the next one still works.
expect_fail "failed" nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        "${nixargs[@]}" -A failing "$fixture"
grep -q "about to fail" "$T/.stderr" || { cat "$T/.stderr" >&2; fail "the failing build's log did not reach Nix"; }
# --keep-failed (sent with BuildDerivation): the failed build's bundle stays
# on the builder, and the failure Nix shows names it.
expect_fail "note: keeping build directory" nix-build --store "$local" "${common[@]}" --no-out-link \
        --max-jobs 0 --keep-failed --builders "$remote x86_64-linux - 1 1 $features" \
        --option builders-use-substitutes false "${nixargs[@]}" -A failing "$fixture"
kept=$(sed -n "s/.*note: keeping build directory '\([^']*\)'.*/\1/p" "$T/.stderr" | head -1)
[ -e "$kept/kept-failed" ] || { cat "$T/.stderr" >&2; fail "no kept bundle at '$kept'"; }
grep -q "about to fail" "$kept/stdout.log" "$kept/stderr.log" || fail "the kept bundle has no build log"
umount "$kept/scratch" 2>/dev/null || true
rm -rf "$kept"
# A wrong fixed-output hash fails with Nix's words and kiln records nothing.
expect_fail "hash mismatch in fixed-output derivation" nix-build --store "$local" "${common[@]}" \
        --no-out-link --max-jobs 0 --builders "$remote x86_64-linux - 1 1 $features" \
        --option builders-use-substitutes false "${nixargs[@]}" -A fodwrong "$fixture"
wrong_drv=$(nix-instantiate --store "$local" "${common[@]}" "${nixargs[@]}" -A fodwrong "$fixture" 2>/dev/null)
wrong_out=$(nix-store --store "$local" -q --outputs "$wrong_drv")
KILN_HOME=$khome kiln nix path-info "$wrong_out" >/dev/null 2>&1 && fail "kiln recorded $wrong_out"
! nix-store --store "$local" -q --hash "$wrong_out" >/dev/null 2>&1 || fail "$wrong_out came back"
# and the builder still works afterwards
nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 --check \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        "${nixargs[@]}" -A hello "$fixture" >/dev/null 2>"$T/again.err" ||
        { tail -5 "$T/again.err" >&2; fail "a build after the failures did not work"; }
# A client that drops its build: kiln cancels it and records nothing.
cat >"$T/slow.nix" <<NIX
{ salt }: derivation {
  name = "slow"; system = builtins.currentSystem; builder = "\${builtins.path { path = $T/bb; name = "bb"; }}/busybox";
  args = [ "sh" "-c" "echo \$salt; echo slow-started; sleep 60; echo done > \$out" ]; inherit salt;
}
NIX
setsid nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt" "$T/slow.nix" >/dev/null 2>"$T/slow.err" &
slow_pid=$!
i=0
until grep -q "slow-started" "$T/serve.log"; do
        i=$((i + 1))
        [ $i -lt 300 ] || { cat "$T/slow.err" >&2; fail "the slow build did not start on kiln"; }
        sleep 0.1
done
kill -KILL -- "-$slow_pid"
wait "$slow_pid" 2>/dev/null || true
i=0
until grep -q "the client hung up, cancelling the build" "$T/serve.log"; do
        i=$((i + 1))
        [ $i -lt 200 ] || { tail -5 "$T/serve.log" >&2; fail "kiln did not cancel the dropped build"; }
        sleep 0.1
done
slow_drv=$(nix-instantiate --store "$local" "${common[@]}" --argstr salt "$salt" "$T/slow.nix" 2>/dev/null)
slow_out=$(nix-store --store "$local" -q --outputs "$slow_drv")
sleep 1
KILN_HOME=$khome kiln nix path-info "$slow_out" >/dev/null 2>&1 && fail "kiln recorded the dropped $slow_out"

# A kiln nix serve killed mid-build: Nix reports a failure, kiln's store
# holds nothing of the build, and the next build works.
: >"$T/serve.pids"
nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt-killed" "$T/slow.nix" >/dev/null 2>"$T/killed.err" &
killed_client=$!
i=0
until [ "$(grep -c slow-started "$T/serve.log")" -ge 2 ]; do
        i=$((i + 1))
        [ $i -lt 300 ] || { cat "$T/killed.err" >&2; fail "the second slow build did not start on kiln"; }
        sleep 0.1
done
for p in $(cat "$T/serve.pids"); do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = "kiln-core" ] || [ "$(cat /proc/$p/comm 2>/dev/null)" = "kiln" ] &&
                kill -KILL "$p" 2>/dev/null || true
done
wait "$killed_client" && fail "nix-build succeeded although kiln nix serve was killed"
killed_drv=$(nix-instantiate --store "$local" "${common[@]}" --argstr salt "$salt-killed" "$T/slow.nix" 2>/dev/null)
killed_out=$(nix-store --store "$local" -q --outputs "$killed_drv")
KILN_HOME=$khome kiln nix path-info "$killed_out" >/dev/null 2>&1 && fail "kiln recorded $killed_out"
nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 --check \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        "${nixargs[@]}" -A chain1 "$fixture" >/dev/null 2>"$T/again.err" ||
        { tail -5 "$T/again.err" >&2; fail "a build after killing kiln nix serve did not work"; }

# The client's build settings apply to its builds on kiln: --timeout and
# --max-silent-time (sent with BuildDerivation) stop the slow build.
expect_fail "build timed out after 2 seconds" nix-build --store "$local" "${common[@]}" \
        --no-out-link --max-jobs 0 --timeout 2 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt-timeout" "$T/slow.nix"
expect_fail "build was silent for 2 seconds" nix-build --store "$local" "${common[@]}" \
        --no-out-link --max-jobs 0 --max-silent-time 2 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt-silent" "$T/slow.nix"
for what in timeout silent; do
        d=$(nix-instantiate --store "$local" "${common[@]}" --argstr salt "$salt-$what" "$T/slow.nix" 2>/dev/null)
        o=$(nix-store --store "$local" -q --outputs "$d")
        KILN_HOME=$khome kiln nix path-info "$o" >/dev/null 2>&1 && fail "kiln recorded $o ($what)"
done

# --repeat (sent with BuildDerivation): kiln builds again and compares. An
# output that differs every time fails with Nix's words under Nix's default
# enforce-determinism and is not recorded; with it off, a warning; a
# deterministic build passes its repeats.
repeat_nix=$KILN_FIXTURES/nix/repeat.nix
repeat_build() { # SALT RANDOM ARGS...
	rs=$1 rr=$2
	shift 2
	nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
		--builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
		--argstr salt "$salt-$rs" --arg random "$rr" "$@" --arg bbDir "$T/bb" "$repeat_nix"
}
repeat_out() {
	d=$(nix-instantiate --store "$local" "${common[@]}" --argstr salt "$salt-$1" --arg random "$2" \
		--arg bbDir "$T/bb" "$repeat_nix" 2>/dev/null)
	nix-store --store "$local" -q --outputs "$d"
}
expect_fail "may not be deterministic: output '$(repeat_out nondet true)' differs" \
	repeat_build nondet true --repeat 1
KILN_HOME=$khome kiln nix path-info "$(repeat_out nondet true)" >/dev/null 2>&1 &&
	fail "kiln recorded the output of a build whose repeat differed"
repeat_build nondet-lax true --repeat 1 --option enforce-determinism false >/dev/null 2>"$T/lax.err" ||
	{ tail -5 "$T/lax.err" >&2; fail "a differing repeat without enforce-determinism failed"; }
# (kiln's stderr, which ssh would show the client, goes to serve.log here)
grep -q "warning: derivation '.*' may not be deterministic" "$T/serve.log" ||
	{ tail -5 "$T/serve.log" >&2; fail "no warning for a differing repeat"; }
n0=$(grep -c "repeating the build of" "$T/serve.log" || true)
repeat_build det false --repeat 2 >/dev/null 2>"$T/det.err" ||
	{ tail -5 "$T/det.err" >&2; fail "a deterministic build failed its repeats"; }
[ "$(grep -c "repeating the build of" "$T/serve.log")" = $((n0 + 2)) ] ||
	fail "kiln did not repeat the deterministic build twice"
KILN_HOME=$khome kiln nix path-info "$(repeat_out det false)" >/dev/null ||
	fail "kiln did not record the repeated deterministic build"

# Four Nix clients at once, each its own store and session; two by two they
# build the same derivations, and every output equals a local build's.
pids=()
csalt() { if [ "$1" -le 2 ]; then echo "$salt-clientsA"; else echo "$salt-clientsB"; fi; }
for c in 1 2 3 4; do
        nix-build --store "$T/client$c" "${common[@]}" --no-out-link --max-jobs 0 \
                --builders "$remote x86_64-linux - 1 1 $features" \
                --option builders-use-substitutes false --argstr salt "$(csalt $c)" \
                --argstr recHash "$rec_hash" --arg bbDir "$T/bb" -A chain3 -A multi -A hello \
                "$fixture" >"$T/client$c.out" 2>"$T/client$c.err" &
        pids+=($!)
done
for c in 1 2 3 4; do
        wait "${pids[$((c - 1))]}" || { tail -10 "$T/client$c.err" >&2; fail "client $c failed"; }
done
for c in 1 3; do
        nix-build --store "$T/plain$c" "${common[@]}" --no-out-link --argstr salt "$(csalt $c)" \
                --argstr recHash "$rec_hash" --arg bbDir "$T/bb" -A chain3 -A multi -A hello \
                "$fixture" >"$T/plain$c.out" 2>"$T/plain$c.err" ||
                { tail -10 "$T/plain$c.err" >&2; fail "plain build for the clients failed"; }
done
for c in 1 2 3 4; do
        p=$T/plain$(( c <= 2 ? 1 : 3 ))
        [ "$(sort "$T/client$c.out")" = "$(sort "$p.out")" ] || fail "client $c: other output paths"
        [ "$(wc -l <"$T/client$c.out")" -ge 3 ] || fail "client $c got $(wc -l <"$T/client$c.out") outputs"
        for o in $(cat "$T/client$c.out"); do
                nix-store --store "$T/client$c" --verify-path "$o" 2>/dev/null ||
                        fail "client $c: $o is not valid"
                [ "$(nix-store --store "$T/client$c" "${common[@]}" -q --hash "$o")" = \
                  "$(nix-store --store "$p" "${common[@]}" -q --hash "$o")" ] ||
                        fail "client $c: NAR hash of $o differs from the local build's"
                [ "$(nix-store --store "$T/client$c" "${common[@]}" -q --references "$o" | sort)" = \
                  "$(nix-store --store "$p" "${common[@]}" -q --references "$o" | sort)" ] ||
                        fail "client $c: references of $o differ"
        done
done

# BuildPaths (which Nix 2.8's own ssh:// store cannot send, since it reads
# the derivation first; spoken here directly): derivations copied in with
# `nix copy --derivation` are built from the .drv files kiln holds, input
# derivations first, with the outputs a local build gives; a path kiln does
# not hold fails with a message.
build_paths() { # PATH: one session with one BuildPaths, the reply on stderr
        $PY - "$1" "$KILN_BIN" "$khome" <<'PYEOF'
import struct, subprocess, sys
def u(n): return struct.pack('<Q', n)
def s(b):
    b = b.encode()
    return u(len(b)) + b + b'\0' * (-len(b) % 8)
p = subprocess.Popen([sys.argv[2], 'nix', 'serve', '--write', '--home', sys.argv[3]],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
p.stdin.write(u(0x390c9deb) + u(0x206) + u(6) + u(1) + s(sys.argv[1]) + u(0) * 5)
p.stdin.flush()
p.stdout.read(16)
st = struct.unpack('<Q', p.stdout.read(8))[0]
msg = b''
if st:
    n = struct.unpack('<Q', p.stdout.read(8))[0]
    msg = p.stdout.read(n)
p.stdin.close()
sys.exit('BuildPaths: status %d: %s' % (st, msg.decode()) if st or p.wait() else 0)
PYEOF
}
bp_args=(--argstr salt "$salt-bp" --argstr recHash "$rec_hash" --arg bbDir "$T/bb")
bp_drv=$(nix-instantiate --store "$local" "${common[@]}" "${bp_args[@]}" -A chain3 "$fixture" 2>/dev/null)
nix --extra-experimental-features nix-command copy "${common[@]}" --store "$local" --derivation \
        --to "$remote" "$bp_drv" 2>"$T/bp.err" || { cat "$T/bp.err" >&2; fail "nix copy --derivation"; }
build_paths "$bp_drv!out" 2>>"$T/serve.log" || { tail -5 "$T/serve.log" >&2; fail "BuildPaths of $bp_drv"; }
nix-build --store "$T/plainbp" "${common[@]}" --no-out-link "${bp_args[@]}" -A chain3 -A chain2 \
        -A chain1 "$fixture" >"$T/plainbp.out" 2>"$T/plainbp.err" ||
        { tail -5 "$T/plainbp.err" >&2; fail "plain build for BuildPaths"; }
for o in $(cat "$T/plainbp.out"); do
        [ "$(nix-store --store "$remote" "${common[@]}" -q --hash "$o" 2>/dev/null)" = \
          "$(nix-store --store "$T/plainbp" "${common[@]}" -q --hash "$o")" ] ||
                fail "BuildPaths: $o is not on kiln with the local build's NAR hash"
done
expect_fail "is not valid" build_paths "/nix/store/11111111111111111111111111111111-none.drv"

# A warm listener (kiln nix serve --listen): the same sessions relayed to it
# by the kiln front end (no kiln-core per session). A relay killed mid-build
# cancels its build there, records nothing, and the next build works.
"$KILN_BIN" nix serve --listen --home "$khome" >"$T/listen.out" 2>"$T/listen.err" &
listen_pid=$!
cleanup_hooks="kill $listen_pid 2>/dev/null || true; $cleanup_hooks"
i=0
until grep -q "^listening on $khome/nix-serve.sock" "$T/listen.out"; do
        i=$((i + 1))
        [ $i -lt 100 ] || { cat "$T/listen.err" >&2; fail "kiln nix serve --listen did not start"; }
        sleep 0.1
done
expect_fail "listener already serves" "$KILN_BIN" nix serve --listen --home "$khome"
: >"$T/serve.pids"
: >"$T/serve.log"
nix-build --store "$local" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt-relay-killed" "$T/slow.nix" >/dev/null 2>"$T/relay-killed.err" &
relay_client=$!
i=0
until grep -q slow-started "$T/serve.log"; do
        i=$((i + 1))
        [ $i -lt 300 ] || { cat "$T/relay-killed.err" "$T/listen.err" >&2; fail "the relayed slow build did not start"; }
        sleep 0.1
done
relays=0
for p in $(cat "$T/serve.pids"); do
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        [ "${exe##*/}" = kiln ] || fail "session $p runs ${exe##*/}, not the relay"
        kill -KILL "$p"
        relays=$((relays + 1))
done
[ "$relays" -ge 1 ] || fail "no relay process to kill"
wait "$relay_client" && fail "nix-build succeeded although its relay was killed"
i=0
until grep -q "the client hung up, cancelling the build" "$T/serve.log"; do
        i=$((i + 1))
        [ $i -lt 200 ] || { tail -5 "$T/serve.log" >&2; fail "the listener did not cancel the relayed build"; }
        sleep 0.1
done
rk_drv=$(nix-instantiate --store "$local" "${common[@]}" --argstr salt "$salt-relay-killed" "$T/slow.nix" 2>/dev/null)
rk_out=$(nix-store --store "$local" -q --outputs "$rk_drv")
sleep 1
KILN_HOME=$khome kiln nix path-info "$rk_out" >/dev/null 2>&1 && fail "the listener recorded $rk_out"
outs=$(nix-build --store "$T/relayed" "${common[@]}" --no-out-link --max-jobs 0 \
        --builders "$remote x86_64-linux - 1 1 $features" --option builders-use-substitutes false \
        --argstr salt "$salt-clientsA" --argstr recHash "$rec_hash" --arg bbDir "$T/bb" \
        -A chain3 -A multi -A hello -A placeholders "$fixture" 2>"$T/relayed.err") ||
        { tail -10 "$T/relayed.err" "$T/listen.err" >&2; fail "a build through the listener failed"; }
for o in $outs; do
        nix-store --store "$T/relayed" --verify-path "$o" 2>/dev/null || fail "relayed: $o is not valid"
done
# Errors reach the relay's stderr and exit status.
printf '\xeb\x9d\x0c\x39\0\0\0\0\x07\x02\0\0\0\0\0\0\x63\0\0\0\0\0\0\0' |
        "$KILN_BIN" nix serve --home "$khome" >/dev/null 2>"$T/unk.err" &&
        fail "an unknown command through the listener did not fail"
grep -q "unknown serve command 99" "$T/unk.err" || fail "no message for an unknown command through the listener"
kill "$listen_pid"

echo "ok: $n outputs offloaded to kiln match local nix-build ($nbuilt built by kiln)"
