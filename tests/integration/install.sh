#!/bin/bash
# make install's result, staged with DESTDIR: the binaries, kiln(1) with a
# section for every verb that --help lists, the bash completion (completing
# verbs and options from the installed kiln), the documentation.
. "$(dirname "$0")/lib.sh"

build_root=${KILN_BUILD_ROOT:?}
stage=$T/stage
meson install -C "$build_root" --no-rebuild --destdir "$stage" >"$T/install.log" 2>&1 ||
        fail "meson install failed: $(tail -3 "$T/install.log")"
prefix=$(meson introspect "$build_root" --buildoptions |
        python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
root=$stage$prefix

for f in bin/kiln libexec/kiln/kiln-core libexec/kiln/kiln-sandbox share/man/man1/kiln.1 \
        share/bash-completion/completions/kiln share/doc/kiln/OPERATIONS.md \
        share/doc/kiln/ARCHITECTURE.md share/doc/kiln/PROTOCOLS.md share/doc/kiln/SANDBOX.md; do
        [ -e "$root/$f" ] || fail "make install did not install $f"
done
"$root/bin/kiln" --version | grep -q '^kiln ' || fail "the installed kiln does not run"
# bin/kiln hashes by itself and finds kiln-core for the other verbs.
"$root/bin/kiln" hash /dev/null | grep -q '^af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262 ' ||
        fail "the installed kiln hash is wrong"
! ldd "$root/bin/kiln" | grep -qE 'grpc|fuse|lmdb|zstd' || fail "bin/kiln links more than libc"
"$root/bin/kiln" import --help | grep -q '^usage: kiln import' || fail "the installed kiln does not reach kiln-core"
# A kiln-core that cannot run is one line naming it, exit status 127.
rc=0
KILN_CORE=$T/no-such-core "$root/bin/kiln" import --help >/dev/null 2>"$T/core.err" || rc=$?
[ "$rc" = 127 ] || fail "a missing kiln-core exits $rc, not 127"
grep -qx "kiln: cannot run $T/no-such-core (KILN_CORE): No such file or directory" "$T/core.err" ||
        fail "a missing kiln-core says: $(cat "$T/core.err")"

# The man page: the synopsis and a subsection per verb and nix verb.
man=$root/share/man/man1/kiln.1
grep -q '^\.TH KILN "1"' "$man" || fail "kiln.1 has no .TH header"
verbs=$("$KILN_BIN" --help | awk '/^verbs:/ {on=1; next} on && /^  [a-z]/ {print $1}')
nix_verbs=$("$KILN_BIN" nix --help | awk '/^verbs:/ {on=1; next} on && /^  [a-z]/ {print $1}')
[ "$(echo "$verbs" | wc -l)" -ge 9 ] || fail "kiln --help lists too few verbs: $verbs"
for v in $verbs; do
        [ "$v" = nix ] && continue
        grep -q "^\.SS kiln $v\$" "$man" || fail "kiln.1 lacks a section for kiln $v"
done
for v in $nix_verbs; do
        grep -q "^\.SS kiln nix $v\$" "$man" || fail "kiln.1 lacks a section for kiln nix $v"
done
# Every option of kiln run's --help is in the page.
for o in $("$KILN_BIN" run --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        grep -qF -- "${o//-/\\-}" "$man" || grep -qF -- "$o" "$man" ||
                fail "kiln.1 lacks kiln run's option $o"
done
if command -v groff >/dev/null; then
        groff -man -Tutf8 -ww "$man" >/dev/null 2>"$T/groff.err" || fail "groff cannot render kiln.1"
        [ ! -s "$T/groff.err" ] || fail "groff warns about kiln.1: $(head -3 "$T/groff.err")"
fi

# The completion, as bash runs it.
complete_line() {
        bash -c '
                source "$1"; shift
                COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kiln
                printf "%s\n" "${COMPREPLY[@]}"' _ "$root/share/bash-completion/completions/kiln" "$@"
}
got=$(complete_line "$root/bin/kiln" '' | sort | tr '\n' ' ')
want=$(echo "$verbs" | sort | tr '\n' ' ')
[ "$got" = "$want" ] || fail "completing verbs: got '$got', want '$want'"
[ "$(complete_line "$root/bin/kiln" im)" = import ] || fail "completing 'im' did not give import"
got=$(complete_line "$root/bin/kiln" nix '' | sort | tr '\n' ' ')
want=$(echo "$nix_verbs" | sort | tr '\n' ' ')
[ "$got" = "$want" ] || fail "completing nix verbs: got '$got', want '$want'"
complete_line "$root/bin/kiln" import --th | grep -qx -- --threads ||
        fail "completing 'import --th' did not give --threads"
complete_line "$root/bin/kiln" nix nar-hash --s | grep -qx -- --sri ||
        fail "completing 'nix nar-hash --s' did not give --sri"
mkdir "$T/files" && touch "$T/files/some-input"
(cd "$T/files" && complete_line "$root/bin/kiln" hash so) | grep -qx some-input ||
        fail "completing a file argument did not give the file"
# The systemd units: installed, accepted by systemd-analyze (on a copy whose
# ExecStart names the staged kiln), and the daemon started the way the
# socket unit starts it, by systemd's own activator, serves on the socket.
units=$stage$prefix/lib/systemd/system
for u in kiln.service kiln.socket; do
        [ -e "$units/$u" ] || fail "make install did not install $u"
done
grep -qx "ExecStart=$prefix/bin/kiln daemon -l sd-listen" "$units/kiln.service" ||
        fail "kiln.service runs: $(grep ExecStart "$units/kiln.service")"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (package systemd)"
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate is missing"
{
        mkdir "$T/units"
        sed "s|^ExecStart=$prefix/|ExecStart=$root/|" "$units/kiln.service" >"$T/units/kiln.service"
        cp "$units/kiln.socket" "$T/units/"
        systemd-analyze verify --man=no "$T/units/kiln.service" "$T/units/kiln.socket" \
                >"$T/verify.log" 2>&1 || fail "systemd-analyze rejects the units: $(cat "$T/verify.log")"
        [ ! -s "$T/verify.log" ] || fail "systemd-analyze warns: $(cat "$T/verify.log")"
}
{
        exec_args=$(sed -n "s|^ExecStart=$prefix/bin/kiln ||p" "$units/kiln.service")
        # shellcheck disable=SC2086 # the unit's arguments, split as systemd splits these
        KILN_HOME=$T/act-home systemd-socket-activate -l "$T/act.sock" \
                "$root/bin/kiln" $exec_args >"$T/act.out" 2>"$T/act.err" &
        act_pid=$!
        cleanup_hooks="kill $act_pid 2>/dev/null || true; $cleanup_hooks"
        i=0
        until [ -S "$T/act.sock" ]; do
                i=$((i + 1)); [ $i -lt 100 ] || fail "systemd-socket-activate did not listen"
                sleep 0.05
        done
        echo activated >"$T/act-file"
        # the first connection starts the daemon, which takes the socket
        d=$("$root/bin/kiln" import --blob-service-addr "grpc+unix://$T/act.sock" \
                --directory-service-addr "grpc+unix://$T/act.sock" "$T/act-file" | json node.file.digest) ||
                fail "import through the socket-activated daemon: $(cat "$T/act.err")"
        [ "$("$root/bin/kiln" cat --blob-service-addr "grpc+unix://$T/act.sock" "b3:$d")" = activated ] ||
                fail "cat through the socket-activated daemon"
        grep -q "^listening on sd-listen (fd 3 unix:$T/act.sock)$" "$T/act.out" ||
                fail "the activated daemon says: $(cat "$T/act.out" "$T/act.err")"
        kill -TERM "$act_pid"
        wait "$act_pid" || fail "the activated daemon exited with status $?"
}
echo "install: binaries, man page, completion, docs and systemd units as expected"
