#!/bin/sh
# The sandbox attack battery: real builds that each try one attack from
# inside the sandbox (tests/sandbox/attack.c, imported as an input), and a
# host-side check of the effect where there is one.
#
# Every case runs on every backend in KILN_SANDBOX_BACKENDS (default
# "sandbox oci-runc oci-crun"; "sandbox" is the native backend). KILN_ATTACKS=a,b
# runs only those cases. All cases run; failures are collected and listed at
# the end, one line each (case, backend, what the attack printed, what the
# host saw), and the script exits 1 if any failed.
#
# Every network check uses only sockets this script opens on this machine
# (127.0.0.1 and abstract unix sockets); every load case stops by itself and
# has timeout= on the build service and a `timeout` around kiln as safety nets.
. "$(dirname "$0")/lib.sh"
: "${KILN_ATTACK_BIN:?KILN_ATTACK_BIN must point at the static attack program}"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

SB="$KILN_SOURCE_ROOT/tests/sandbox"
ATTACK=$KILN_ATTACK_BIN
BB=/bin/busybox
BACKENDS=${KILN_SANDBOX_BACKENDS:-sandbox oci-runc oci-crun}
ONLY=${KILN_ATTACKS:-}
# A signal also runs lib.sh's exit hooks (the host process, listeners).
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
trap 'exit 141' PIPE
# Must not reach any build (the env case looks for it).
export KILN_ATTACK_LEAK=from-the-host

# --- what the cases share -------------------------------------------------

# The service URL of $BACKEND with the case's options $U, and timeout=60 as
# a safety net unless the case sets its own.
service_url() {
	case $BACKEND in
	oci-runc) base="oci://$KILN_HOME/b-runc?runtime=runc" ;;
	oci-crun) base="oci://$KILN_HOME/b-crun?runtime=crun" ;;
	sandbox) base="sandbox://$KILN_HOME/b-native" ;;
	*) echo "unknown backend '$BACKEND'" >&2; return 1 ;;
	esac
	opts=$U
	case "&$U" in *"&timeout="*) ;; *) opts="${U:+$U&}timeout=60" ;; esac
	case $base in *\?*) echo "$base&$opts" ;; *) echo "$base?$opts" ;; esac
}
# The backend's directory on the host.
backend_dir() {
	case $BACKEND in
	oci-runc) echo "$KILN_HOME/b-runc" ;;
	oci-crun) echo "$KILN_HOME/b-crun" ;;
	*) echo "$KILN_HOME/b-native" ;;
	esac
}

# bad TEXT: the case fails for this reason (collected; the case goes on).
bad() { WHY="${WHY:+$WHY; }$*"; }
# The start of a file on one line, for messages.
oneline() { head -c "${2:-500}" "$1" 2>/dev/null | tr '\n' '|' | sed 's/|$//'; }
errhead() { oneline "$D/err" "${1:-500}"; }

# build ARGS...: one `kiln run` on $BACKEND with the attack program and
# busybox as inputs, then $X (extra options), $O (outputs) and ARGS, for at
# most $LIMIT seconds. Sets RC and ELAPSED; stdout in $D/out, stderr in
# $D/err, outputs exported under $D/x.
build() {
	url=$(service_url) || { RC=99; return; }
	rm -rf "$D/x"
	t0=$(date +%s)
	# shellcheck disable=SC2086 # X and O are lists of options
	# --no-cache: the same attack runs on every backend and under other limits
	timeout -k 5 "$LIMIT" "$KILN_BIN" run --no-cache --build-service-addr "$url" \
		--input attack="$ATTACK" --input busybox="$BB" --export "$D/x" $X $O "$@" \
		>"$D/out" 2>"$D/err"
	RC=$?
	ELAPSED=$(($(date +%s) - t0))
	[ $RC != 124 ] && [ $RC != 137 ] || echo "kiln run killed after $LIMIT s (hung)" >>"$D/err"
}
# The attack's verdict line for case $1: from the exported output r, else
# from the build's failure message (its log tail).
get_verdict() {
	VERDICT=$(cat "$D/x/r" "$D/err" 2>/dev/null | grep -m1 "^$1: " || true)
}
# attack CASE ARGS...: a build whose command is /inputs/attack -o /out/r
# CASE ARGS. Returns 1 (and fails the case) if the build failed.
attack() {
	ACASE=$1
	build -- /inputs/attack -o /out/r "$@"
	get_verdict "$ACASE"
	build_ok
}
# shell CASE SCRIPT: a build running SCRIPT with busybox sh, in which
# /inputs/attack prints the verdict of CASE.
shell() {
	ACASE=$1
	build -- /inputs/busybox sh -c "$2"
	get_verdict "$ACASE"
	build_ok
}
build_ok() {
	[ "$RC" = 0 ] && return 0
	[ -z "$MAYFAIL" ] || return 1 # the case judges the failure
	bad "build failed (exit $RC): $(errhead)"
	return 1
}
# want REASON...: the attack printed "CASE: blocked REASON" for one of them.
want() {
	for w; do [ "$VERDICT" = "$ACASE: blocked $w" ] && return 0; done
	bad "attack printed '${VERDICT:-nothing}', wanted 'blocked $(echo "$*" | tr ' ' '|')'"
	return 1
}
want_blocked() {
	case $VERDICT in "$ACASE: blocked "*) return 0 ;; esac
	bad "attack printed '${VERDICT:-nothing}', wanted 'blocked' (any reason)"
	return 1
}
# The attack ran and said something (for cases judged by the host alone).
want_verdict() {
	[ -n "$VERDICT" ] && return 0
	bad "the attack printed no verdict"
	return 1
}
# build_fails PATTERN: the build failed, and said PATTERN.
build_fails() {
	if [ "$RC" = 0 ]; then
		bad "build succeeded, wanted a failure saying '$1' (attack printed '${VERDICT:-nothing}')"
		return 1
	fi
	if grep -q -- "$1" "$D/err"; then
		NOTE="refused: $(errhead 160)"
		return 0
	fi
	bad "stderr lacks '$1': $(errhead 700)"
	return 1
}
# The JSON node of output $1 from kiln run's stdout.
output_node() { grep "\"output\":\"$1\"" "$D/out" | json node; }
b64() { printf %s "$1" | base64 -w0; }
# The b3 digest of a host file in the form nodes carry (base64).
b3_b64() { kiln hash "$1" | cut -d' ' -f1 | $PY -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.stdin.read().strip())).decode())'; }

nprocs() { ls -d /proc/[0-9]* | wc -l; }

# A host process for the ptrace and kill cases.
start_victim() {
	sleep 900 &
	VICTIM=$!
	cleanup_hooks="kill $VICTIM 2>/dev/null || true; $cleanup_hooks"
}
victim_unharmed() {
	if ! kill -0 "$VICTIM" 2>/dev/null; then
		bad "host process $VICTIM (sleep) is gone"
		start_victim
		return 1
	fi
	tp=$(awk '$1 == "TracerPid:" {print $2}' "/proc/$VICTIM/status")
	st=$(awk '$1 == "State:" {print $2}' "/proc/$VICTIM/status")
	[ "$tp" = 0 ] || bad "host process $VICTIM is traced by pid $tp"
	[ "$st" = S ] || bad "host process $VICTIM is in state $st"
}

# listen tcp | listen abstract NAME: a host-side witness (tests/sandbox/
# listen.py) that logs every connection to $D/listen.log; sets LISTENER and
# WHERE (the port or name).
listen() {
	: >"$D/listen.log"
	$PY "$SB/listen.py" "$@" "$D/listen.log" &
	LISTENER=$!
	i=0
	until grep -q '^ready ' "$D/listen.log"; do
		i=$((i + 1))
		[ $i -lt 100 ] || { bad "the host listener did not start"; return 1; }
		sleep 0.05
	done
	WHERE=$(sed -n 's/^ready //p' "$D/listen.log")
}
unlisten() {
	sleep 0.2 # a connection accepted just now is logged
	kill "$LISTENER" 2>/dev/null || true
	wait "$LISTENER" 2>/dev/null || true
}
connections() { grep '^conn' "$D/listen.log" | tr '\n' ' '; }

# output_refused NAME WORD: a build that tried to leave a WORD file NAME in an
# output either failed naming it (and WORD), or could not make one at all.
output_refused() {
	if [ "$RC" != 0 ]; then
		if grep -q -- "$1" "$D/err" && grep -q -- "$2" "$D/err"; then
			NOTE="refused: $(errhead 160)"
			return 0
		fi
		bad "the build failed, but not naming $1 with '$2': $(errhead)"
		return 1
	fi
	case $VERDICT in
	"$ACASE: blocked "*)
		NOTE="not exercised: no way to make a $2 file was left ($VERDICT)"
		return 0 ;;
	esac
	bad "an output holding a $2 file was accepted (attack printed '${VERDICT:-nothing}')"
	return 1
}

# A request for `kiln build` (kiln_request FILE COMMAND-JSON OUTPUTS-JSON
# RO-PATHS-JSON), with the attack program and busybox as inputs and the
# environment $REQ_ENV (PATH=/bin unless the case sets it).
kiln_request() {
	cat >"$1" <<JSON
{"inputs": [$ATTACK_NODE, $BB_NODE${EXTRA_INPUTS:-}], "commandArgs": $2,
 "workingDir": "build", "scratchPaths": ["build", "out"], "inputsDir": "inputs",
 "outputs": $3, "environmentVars": $REQ_ENV,
 "constraints": {"system": "x86_64-linux", "availableRoPaths": $4}}
JSON
}
# kbuild REQUEST: kiln build on $BACKEND; like build.
kbuild() {
	url=$(service_url) || { RC=99; return; }
	timeout -k 5 "$LIMIT" "$KILN_BIN" build --no-cache --build-service-addr "$url" "$1" >"$D/out" 2>"$D/err"
	RC=$?
}
# The content of output $1 (index) of a kiln build result.
kbuild_output() { kiln cat "b3:$(json "outputs.$1.file.digest" <"$D/out")" 2>/dev/null; }

# --- the cases ------------------------------------------------------------
# c_NAME: one attack. Cases call bad() for each thing wrong; run_case adds
# the check that no host device node changed.

# The host's password hashes, by name and through /proc/1/root.
c_read_shadow() {
	attack read /etc/shadow /proc/1/root/etc/shadow /proc/self/root/../../etc/shadow &&
		want_blocked
}
# The service's own state: its home, the store, the bundles.
c_read_kiln_home() { attack list "$KILN_HOME" "$KILN_HOME/blobs" "$(backend_dir)" && want_blocked; }
# A stored blob that is no input of the build, and the directory database.
c_read_store() { attack read "$STORE_BLOB" "$KILN_HOME/directories/data.mdb" && want_blocked; }
c_read_root() { attack list /root && want_blocked; }
# A file planted on the host, searched for everywhere the build can see.
c_host_marker() { attack find "$HOST_MARKER" && want ENOENT; }

# Writing to an input: the host file and the stored blob stay as they were.
c_write_input() {
	X="--input victim=$T/victim"
	attack write_input /inputs/victim && want_blocked
	[ "$(stat -c '%a %u %g %Y %s' "$T/victim")" = "$VICTIM_STAT" ] ||
		bad "host file changed: $(stat -c '%a %u %g %Y %s' "$T/victim"), was $VICTIM_STAT"
	[ "$(sha256sum <"$T/victim")" = "$VICTIM_SUM" ] || bad "host file content changed"
	[ "$(kiln cat "b3:$VICTIM_DIGEST" | sha256sum)" = "$VICTIM_SUM" ] || bad "stored blob changed"
}

# setuid and setgid bits, through each call that sets modes.
c_setuid_chmod() { attack setuid_chmod && want EPERM; }
c_setgid_chmod() { attack setgid_chmod && want EPERM; }
c_setuid_fchmod() { attack setuid_fchmod && want EPERM; }
c_setuid_fchmodat() { attack setuid_fchmodat && want EPERM; }
c_setuid_fchmodat2() { attack setuid_fchmodat2 && want EPERM; }
# Created with the bits, in an output (seccomp cannot see every way to do
# that): refused, created without them, or the output refused.
created_suid() {
	O="--output out/tree --output out/r"
	MAYFAIL=1
	attack "$1" "/out/tree/$2"
	if [ "$RC" != 0 ]; then
		output_refused "$2" "$3"
	elif [ "${VERDICT#*: ESCAPED}" != "$VERDICT" ]; then
		bad "an output holding a $3 file was accepted (attack printed '$VERDICT')"
	else
		want EPERM stripped
	fi
}
c_setuid_open() { created_suid setuid_open evil-open setuid; }
c_setgid_mkdir() { created_suid setgid_mkdir evil-mkdir setgid; }
c_setuid_mknod() { created_suid setuid_mknod evil-mknod setuid; }
# held CASE NAME: runs `attack CASE /build/NAME 8` in the background; once
# it left NAME.ready (at most 5 s), sets HELD to NAME's path on the host (or
# empty: the scratch space is not visible there), then lets it end.
held() {
	(D="$D/bg" && mkdir -p "$D" && attack "$1" "/build/$2" 8) &
	bg=$!
	ready="" i=0
	while [ -z "$ready" ] && [ $i -lt 50 ] && kill -0 $bg 2>/dev/null; do
		ready=$(find "$(backend_dir)" -xdev -name "$2.ready" 2>/dev/null | head -1)
		[ -n "$ready" ] || sleep 0.1
		i=$((i + 1))
	done
	HELD=${ready%.ready}
	[ -n "$HELD" ] || NOTE="$2 was not found on the host"
}
release() {
	[ -z "$HELD" ] || : >"$HELD.done"
	wait $bg
	ACASE=$1
	VERDICT=$(cat "$D/bg/x/r" "$D/bg/err" 2>/dev/null | grep -m1 "^$1: " || true)
	[ "$VERDICT" ] || bad "the build failed: $(oneline "$D/bg/err")"
}
# A setuid-root file in the scratch space, which is on the host while the
# build runs.
c_suid_root() {
	held suid_root evil-root
	found=""
	[ -z "$HELD" ] || found=$(find "$HELD" -user 0 -perm -4000 -printf '%p (mode %m, owner %U:%G)')
	release suid_root
	[ -z "$found" ] || bad "a setuid-root file appeared on the host: $found"
	want_blocked
}
# Whatever got through: the output check refuses setuid/setgid files.
c_output_setuid() {
	MAYFAIL=1
	O="--output out/tree --output out/r"
	shell make_suid '/inputs/busybox mkdir -p /out/tree/bin &&
		/inputs/attack -o /out/r make_suid /out/tree/bin/evil-suid 4755'
	output_refused evil-suid setuid
}
c_output_setgid() {
	MAYFAIL=1
	O="--output out/tree --output out/r"
	shell make_suid '/inputs/busybox mkdir -p /out/tree &&
		/inputs/attack -o /out/r make_suid /out/tree/evil-sgid 2755'
	output_refused evil-sgid setgid
}

# Extended attributes: every *xattr call is ENOTSUP (errno 95, EOPNOTSUPP).
c_xattr_user() { attack xattr_user && want EOPNOTSUPP; }
# ... and a file capability is a setuid-root in disguise, also on the host.
c_xattr_capability() {
	held xattr_capability evil-cap
	cap=""
	[ -z "$HELD" ] || cap=$($PY -c 'import os, sys
try: print(os.getxattr(sys.argv[1], "security.capability").hex())
except OSError: pass' "$HELD")
	release xattr_capability
	[ -z "$cap" ] || bad "the host file $HELD has security.capability $cap"
	want EOPNOTSUPP
}
c_xattr_trusted() { attack xattr_trusted && want EOPNOTSUPP; }
c_xattr_variants() { attack xattr_variants && want EOPNOTSUPP; }

c_mknod_char() { attack mknod_char && want EPERM; }
c_mount() { attack mount && want EPERM; }
c_umount() { attack umount && want EPERM; }
c_userns_unshare() { attack userns_unshare && want EPERM; }
c_userns_clone() { attack userns_clone && want EPERM; }
c_clone3() { attack clone3 && want ENOSYS; }

# A host process: not visible, so neither traced nor killed.
c_ptrace_host() {
	attack ptrace_host "$VICTIM" && want ESRCH
	victim_unharmed
}
c_kill_host() {
	attack kill_host "$VICTIM" && want ESRCH
	victim_unharmed
}

# /proc/sys is read-only (the host's core_pattern is written back unchanged
# if it is not); /proc/sysrq-trigger cannot be opened for writing.
c_proc_sys_write() {
	before=$(cat /proc/sys/kernel/core_pattern)
	attack proc_sys_write && want_blocked
	[ "$(cat /proc/sys/kernel/core_pattern)" = "$before" ] ||
		bad "host core_pattern changed to '$(cat /proc/sys/kernel/core_pattern)'"
}
c_sysrq_trigger() {
	attack sysrq_trigger && want_blocked
	[ -e /proc/sysrq-trigger ] || NOTE="this kernel has no /proc/sysrq-trigger"
}
c_proc_kernel_files() { attack proc_kernel_files && want clean; }

c_keyring() { attack keyring && want EPERM; }
c_bpf() { attack bpf && want EPERM; }
c_perf_event() { attack perf_event && want EPERM; }
c_kernel_modules() { attack kernel_modules && want EPERM; }
c_reboot() { attack reboot && want EPERM; }
c_kexec() { attack kexec && want EPERM; }
c_swap() { attack swap && want EPERM; }
# The host clock: its offset from the boot clock stays put.
clock_offset() { $PY -c 'import time; print(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))'; }
c_clock() {
	before=$(clock_offset)
	attack clock && want EPERM
	after=$(clock_offset)
	$PY -c "import sys; sys.exit(abs($after - $before) > 0.5)" ||
		bad "host clock moved by $($PY -c "print($after - $before)") s"
}
c_hostname() {
	h=$(hostname)
	dn=$(cat /proc/sys/kernel/domainname)
	attack hostname && want EPERM
	if [ "$(hostname)" != "$h" ]; then
		bad "host hostname changed to '$(hostname)'"
		hostname "$h"
	fi
	if [ "$(cat /proc/sys/kernel/domainname)" != "$dn" ]; then
		bad "host domainname changed to '$(cat /proc/sys/kernel/domainname)'"
		echo "$dn" >/proc/sys/kernel/domainname
	fi
}
c_pivot_root() { attack pivot_root && want EPERM; }
c_chroot() { attack chroot && want EPERM; }
c_acct() { attack acct && want EPERM; }
c_quotactl() { attack quotactl && want EPERM; }
c_userfaultfd() { attack userfaultfd && want EPERM; }
c_io_uring() { attack io_uring && want EPERM; }

# Network: raw sockets, the interfaces, the host's loopback and abstract
# sockets from a build without network.
c_raw_socket() { attack raw_socket && want EPERM; }
c_packet_socket() {
	X=--network
	attack packet_socket && want EPERM
}
c_netns() { attack netns && want lo-only; }
c_loopback_tcp() {
	listen tcp || return 1
	attack tcp_connect "$WHERE" && want_blocked
	unlisten
	[ -z "$(connections)" ] || bad "the host's 127.0.0.1:$WHERE was reached: $(connections)"
}
c_abstract_unix() {
	listen abstract "kiln-attack-$$-$BACKEND" || return 1
	attack unix_connect "$WHERE" && want_blocked
	unlisten
	[ -z "$(connections)" ] || bad "the host's @$WHERE was reached: $(connections)"
}
# With network: setuid(0), then a host service that trusts SO_PEERCRED.
c_peer_root() {
	X=--network
	listen abstract "kiln-attack-peer-$$-$BACKEND" || return 1
	if attack peer_root "$WHERE"; then want EPERM; fi
	unlisten
	if grep -q '^conn uid=0 ' "$D/listen.log"; then
		bad "a host socket saw a peer with uid 0: $(connections)"
	elif [ -n "$(connections)" ]; then
		NOTE="host socket saw: $(connections)"
	fi
}

# What the build starts with.
c_fds() { attack fds && want clean; }
# The environment is the request's, exactly (KILN_ATTACK_LEAK is in kiln's).
c_env() {
	REQ_ENV="[{\"key\": \"KILN_ATTACK_FOO\", \"value\": \"$(b64 bar)\"},
		{\"key\": \"PATH\", \"value\": \"$(b64 /bin)\"}]"
	kiln_request "$D/req.json" \
		'["/inputs/attack", "-o", "/out/r", "env", "KILN_ATTACK_FOO=bar", "PATH=/bin"]' \
		'["out/r"]' '[]'
	kbuild "$D/req.json"
	build_ok || return 1
	ACASE=env
	VERDICT=$(kbuild_output 0)
	want exact
}
c_caps() { attack caps && want clean; }
c_ids() { attack ids && want clean; }
c_idmap() { attack idmap && want clean; }
c_no_sys() { attack no_sys && want ENOENT; }
c_dev_list() { attack dev_list && want clean; }

# /dev: whatever the call does inside, the host's node keeps its mode, owner
# and mtime (HOST_DEV: run_case's comparison of the host's nodes is part of
# the case, and the attack's own verdict only has to be there).
c_dev_chmod() { HOST_DEV=1; attack dev_chmod /dev/null && want_verdict; }
c_dev_chown() { HOST_DEV=1; attack dev_chown /dev/null && want_verdict; }
c_dev_touch() { HOST_DEV=1; attack dev_touch /dev/full && want_verdict; }
c_dev_rm() { HOST_DEV=1; attack dev_rm /dev/null && want_verdict; }
# A build that does nothing (crun chowns the host's /dev/null this way).
c_dev_empty_build() { HOST_DEV=1; build -- /inputs/busybox touch /out/r && build_ok; }

# Outputs: a symlink is stored as a symlink; a symlink planted in an
# output's parent path must not lead the ingest out to the host.
c_output_symlink() {
	O="--output out/link --output out/r"
	attack symlink /etc/shadow /out/link || return 1
	node=$(output_node out/link)
	case $node in
	*'"symlink"'*"\"target\": \"$(b64 /etc/shadow)\""*) ;;
	*'"file"'*)
		bad "stored as a file (host /etc/shadow is b3:$SHADOW_B3): $node" ;;
	*) bad "stored as $node" ;;
	esac
}
c_output_parent_symlink() {
	MAYFAIL=1
	O="--output out/d/shadow --output out/r"
	attack symlink /etc /out/d
	if [ "$RC" = 0 ]; then
		bad "accepted output out/d/shadow through the symlink out/d -> /etc: $(output_node out/d/shadow)"
	else
		NOTE="refused: $(errhead 160)"
	fi
	[ -z "$(find "$KILN_HOME/blobs" -name "$SHADOW_HEX")" ] ||
		bad "the host's /etc/shadow is now in the store"
}
# Fifos and sockets in outputs fail, naming the path (and do not hang).
c_output_fifo() {
	MAYFAIL=1
	O="--output out/tree --output out/r"
	LIMIT=30
	shell make_special '/inputs/busybox mkdir -p /out/tree &&
		/inputs/attack -o /out/r make_special /out/tree/evil-fifo fifo'
	build_fails evil-fifo
}
c_output_socket() {
	MAYFAIL=1
	O="--output out/evil-sock --output out/r"
	LIMIT=30
	attack make_special /out/evil-sock socket
	build_fails evil-sock
}
# Hard links of an input, or of /proc files, into an output.
c_hardlink_input() {
	O="--output out/tree --output out/r"
	shell hardlink_input '/inputs/busybox mkdir -p /out/tree &&
		/inputs/attack -o /out/r hardlink_input /inputs/busybox /out/tree/h' && want_blocked
}
c_hardlink_proc() {
	O="--output out/tree --output out/r"
	shell hardlink_proc '/inputs/busybox mkdir -p /out/tree &&
		/inputs/attack -o /out/r hardlink_proc /out/tree' && want_blocked
}
# /proc/self/exe and /proc/1/exe (busybox sh here) opened for writing; the
# host's runtimes and binaries keep their content.
c_proc_exe_write() {
	shell proc_exe_write '/inputs/attack -o /out/r proc_exe_write; /inputs/busybox true' &&
		want_blocked
	[ "$(sums)" = "$BIN_SUMS" ] || bad "host binaries changed: $(sums | tr '\n' ' ')"
}
sums() {
	for b in runc crun; do command -v $b || true; done | xargs sha256sum "$KILN_BIN" "$ATTACK" "$BB"
}

# Load: each is bounded by the attack itself and by timeout= on the service.
c_fork_bomb() {
	MAYFAIL=1
	U="pids-max=64&timeout=30"
	LIMIT=60
	before=$(nprocs)
	attack fork_bomb 1000 15
	build_fails "process limit" && [ "$ELAPSED" -gt 8 ] &&
		bad "the fork bomb ran ${ELAPSED} s before the build was stopped"
	i=0
	while [ "$(nprocs)" -gt $((before + 20)) ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(nprocs)" -le $((before + 20)) ] ||
		bad "host process count stayed at $(nprocs) (was $before)"
}
c_memory_hog() {
	MAYFAIL=1
	U="memory-max=134217728"
	attack memory_hog 512
	build_fails "out of memory"
}
c_silence() {
	MAYFAIL=1
	U="max-silent-time=1&timeout=30"
	attack silence 10
	build_fails "silent for 1 seconds" && [ "$ELAPSED" -gt 6 ] &&
		bad "stopped only after ${ELAPSED} s"
}
# An endless log: killed at the cap, the message carries the last lines,
# and the service's directory never holds much more than the cap.
c_log_flood() {
	MAYFAIL=1
	U="max-log-size=1048576&timeout=30"
	dir=$(backend_dir)
	(while :; do du -sbx "$dir" 2>/dev/null | cut -f1; sleep 0.1; done) >"$D/du" &
	du_pid=$!
	base=$(du -sbx "$dir" 2>/dev/null | cut -f1)
	attack log_flood 67108864 20
	kill $du_pid
	wait $du_pid 2>/dev/null
	build_fails "log exceeded 1048576 bytes" || return 1
	last=$(grep -o 'flood line [0-9]*' "$D/err" | awk '{n = $3 + 0} n > m {m = n} END {print m + 0}')
	# 62-byte lines: the cap holds about 16900 of them
	[ "$last" -ge 15000 ] || bad "the message's last flood line is $last: not the end of the log"
	max=$(sort -n "$D/du" | tail -1)
	[ "$((${max:-0} - ${base:-0}))" -le 3145728 ] ||
		bad "the service's directory grew by $((max - base)) bytes during the build"
	size=$(wc -c <"$D/err")
	[ "$size" -le 262144 ] || bad "kiln's message is $size bytes"
}
# A full scratch space or /tmp (one tmpfs, scratch-size): the build fails
# with "scratch space full" (the script fails too, as a real build would).
c_scratch_full() {
	MAYFAIL=1
	U="scratch-size=16777216"
	shell fill '/inputs/attack fill /build 64; exit 1'
	build_fails "scratch space full"
}
c_tmp_full() {
	MAYFAIL=1
	U="scratch-size=16777216"
	shell fill '/inputs/attack fill /tmp 64; exit 1'
	build_fails "scratch space full"
}

# available_ro_paths through a JSON request: refused unless ro-paths= allows
# it; then readable and read-only.
c_ro_paths_denied() {
	kiln_request "$D/req.json" "[\"/inputs/attack\", \"-o\", \"/out/r\", \"read\", \"$T/hostonly/secret\"]" \
		'["out/r"]' "[\"$T/hostonly\"]"
	kbuild "$D/req.json"
	[ "$RC" = 0 ] && VERDICT=$(kbuild_output 0)
	build_fails "not allowed by this build service"
}
c_ro_paths_allowed() {
	U="ro-paths=$T/hostonly"
	ACASE="read"
	kiln_request "$D/req.json" "[\"/inputs/busybox\", \"sh\", \"-c\",
		\"/inputs/attack -o /out/r read $T/hostonly/secret; /inputs/attack -o /out/w write_input $T/hostonly/secret\"]" \
		'["out/r", "out/w"]' "[\"$T/hostonly\"]"
	kbuild "$D/req.json"
	build_ok || return 1
	r=$(kbuild_output 0)
	w=$(kbuild_output 1)
	case $r in "read: ESCAPED opened $T/hostonly/secret and read "*) ;;
	*) bad "the allowed path was not readable: '$r'" ;; esac
	case $w in "write_input: blocked "*) ;;
	*) bad "the allowed path was writable: '$w'" ;; esac
	[ "$(cat "$T/hostonly/secret")" = "$SECRET" ] || bad "host file changed"
}

# A symlink among the inputs is made in the sandbox and resolves there: a
# bind mount of it would follow it on the host and hand the build the
# host's root (here through the link "hostroot" -> "/").
c_input_symlink() {
	ACASE="read"
	EXTRA_INPUTS=", {\"symlink\": {\"name\": \"$(b64 hostroot)\", \"target\": \"$(b64 /)\"}}"
	kiln_request "$D/req.json" "[\"/inputs/busybox\", \"sh\", \"-c\",
		\"/inputs/attack -o /out/r read /inputs/hostroot$T/hostonly/secret; if [ -L /inputs/hostroot ]; then /inputs/busybox readlink /inputs/hostroot; else echo not a symlink; fi > /out/l\"]" \
		'["out/l", "out/r"]' '[]'
	EXTRA_INPUTS=""
	kbuild "$D/req.json"
	build_ok || return 1
	VERDICT=$(kbuild_output 1)
	want_blocked
	l=$(kbuild_output 0)
	[ "$l" = / ] || bad "the input hostroot -> / is not that symlink in the sandbox: '$l'"
}

# Two builds at once: the second looks for the first's marker file
# everywhere it can list. The first ends when the test leaves NAME.done
# beside its marker on the host (or after 10 s, if the marker is not found).
c_scratch_isolation() {
	U="concurrency=2"
	name="kiln-scratch-marker-$$-$BACKEND"
	(D="$D/first" && mkdir -p "$D" && attack marker "/build/$name" 10) &
	first=$!
	seen=""
	i=0
	while [ -z "$seen" ] && [ $i -lt 50 ]; do
		seen=$(find "$(backend_dir)" -name "$name" 2>/dev/null | head -1)
		[ -n "$seen" ] || sleep 0.1
		i=$((i + 1))
	done
	[ -n "$seen" ] || NOTE="the first build's marker was not found on the host within 5 s"
	attack find "$name" && want ENOENT
	kill -0 $first 2>/dev/null || bad "the first build had ended: the builds did not overlap"
	[ -z "$seen" ] || : >"$seen.done"
	wait $first || bad "the first build failed: $(oneline "$D/first/err")"
}

# The daemon without -l listens on a unix socket, and on no TCP port.
c_daemon_unix() {
	"$KILN_BIN" daemon --build-service-addr dummy:// >"$D/daemon.out" 2>"$D/daemon.err" &
	dpid=$!
	i=0
	until grep -q '^listening on ' "$D/daemon.out" 2>/dev/null; do
		i=$((i + 1))
		if ! kill -0 $dpid 2>/dev/null || [ $i -ge 200 ]; then
			bad "the daemon did not start listening: $(oneline "$D/daemon.err")"
			stop_daemon $dpid
			return 1
		fi
		sleep 0.05
	done
	addr=$(sed -n 's/^listening on //p' "$D/daemon.out")
	inodes=$(ls -l "/proc/$dpid/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
	tcp=$(awk -v inodes=" $inodes" '$4 == "0A" && index(inodes, " " $10 " ") {print $2}' \
		/proc/net/tcp /proc/net/tcp6 | tr '\n' ' ')
	[ -z "$tcp" ] || bad "the daemon listens on TCP (local address $tcp; it printed '$addr')"
	path=${addr#unix://}
	path=${path#unix:}
	case $path in
	/*) [ -S "$path" ] || bad "it printed '$addr', but $path is no socket" ;;
	*) bad "it listens on '$addr', not a unix socket" ;;
	esac
	stop_daemon $dpid
}

CASES="read_shadow read_kiln_home read_store read_root host_marker write_input
	input_symlink
	setuid_chmod setgid_chmod setuid_fchmod setuid_fchmodat setuid_fchmodat2
	setuid_open setgid_mkdir setuid_mknod suid_root output_setuid output_setgid
	xattr_user xattr_capability xattr_trusted xattr_variants
	mknod_char mount umount userns_unshare userns_clone clone3
	ptrace_host kill_host proc_sys_write sysrq_trigger proc_kernel_files
	keyring bpf perf_event kernel_modules reboot kexec swap clock hostname
	pivot_root chroot acct quotactl userfaultfd io_uring
	raw_socket packet_socket netns loopback_tcp abstract_unix peer_root
	fds env caps ids idmap no_sys dev_list
	dev_chmod dev_chown dev_touch dev_rm dev_empty_build
	output_symlink output_parent_symlink output_fifo output_socket
	hardlink_input hardlink_proc proc_exe_write
	fork_bomb memory_hog silence log_flood scratch_full tmp_full
	ro_paths_denied ro_paths_allowed scratch_isolation"
# Cases about the service rather than a backend: run once.
ONCE_CASES="daemon_unix"

# --- running them -----------------------------------------------------------

selected() {
	[ -z "$ONLY" ] && return 0
	case ",$ONLY," in *",$1,"*) return 0 ;; esac
	return 1
}

n_run=0
n_failed=0
: >"$T/failures"
# run_case NAME: runs c_NAME on $BACKEND, checks the host's device nodes,
# prints the result and records a failure.
run_case() {
	CASE=$1
	WHY="" NOTE="" U="" X="" O="--output out/r" LIMIT=90 VERDICT="" ACASE="" RC=""
	MAYFAIL="" HOST_DEV="" REQ_ENV="[{\"key\": \"PATH\", \"value\": \"$(b64 /bin)\"}]"
	D="$T/cases/$BACKEND/$CASE"
	mkdir -p "$D"
	printf '%s [%s]: ' "$CASE" "$BACKEND"
	$PY "$SB/devnodes.py" snapshot "$D/dev.before"
	if command -v "c_$CASE" >/dev/null; then "c_$CASE" || true; else bad "no such case"; fi
	if ! $PY "$SB/devnodes.py" check "$D/dev.before" >"$D/dev.diff"; then
		if [ -n "$HOST_DEV" ]; then
			bad "$(tr '\n' ';' <"$D/dev.diff" | sed 's/;$//') (restored)"
		else
			DEV_CHANGED="$DEV_CHANGED $CASE"
		fi
	fi
	n_run=$((n_run + 1))
	if [ -n "$WHY" ]; then
		n_failed=$((n_failed + 1))
		echo "FAIL: $WHY"
		echo "$CASE [$BACKEND]: $WHY" >>"$T/failures"
	else
		echo "PASS${VERDICT:+ ($VERDICT)}${NOTE:+ ($NOTE)}"
	fi
}

for c in $(echo "$ONLY" | tr ',' ' '); do
	# shellcheck disable=SC2086,SC2116 # one line of names
	case " $(echo $CASES $ONCE_CASES) " in *" $c "*) ;; *) fail "KILN_ATTACKS: no case '$c'" ;; esac
done

for BACKEND in $BACKENDS; do
	U=""
	service_url >/dev/null || fail "KILN_SANDBOX_BACKENDS: no backend '$BACKEND' (oci-runc, oci-crun, sandbox)"
done

# Shared fixtures.
$PY "$SB/devnodes.py" repair
mkdir -p "$T/hostonly"
SECRET="kiln-hostonly-secret-$$"
echo "$SECRET" >"$T/hostonly/secret"
HOST_MARKER="kiln-host-marker-$$"
: >"$T/hostonly/$HOST_MARKER"
echo "victim-content-$$" >"$T/victim"
VICTIM_STAT=$(stat -c '%a %u %g %Y %s' "$T/victim")
VICTIM_SUM=$(sha256sum <"$T/victim")
VICTIM_DIGEST=$(kiln import "$T/victim" | json node.file.digest)
printf 'kiln-store-secret-%s' $$ >"$T/storesecret"
kiln import "$T/storesecret" >/dev/null
STORE_BLOB=$(grep -rl "kiln-store-secret-$$" "$KILN_HOME/blobs" | head -1)
[ -n "$STORE_BLOB" ] || fail "cannot find the stored secret under $KILN_HOME/blobs"
SHADOW_HEX=$(kiln hash /etc/shadow | cut -d' ' -f1)
SHADOW_B3=$(b3_b64 /etc/shadow)
ATTACK_NODE=$(kiln import "$ATTACK" | json node | sed "s/\"file\": {/\"file\": {\"name\": \"$(b64 attack)\", /")
BB_NODE=$(kiln import "$BB" | json node | sed "s/\"file\": {/\"file\": {\"name\": \"$(b64 busybox)\", /")
BIN_SUMS=$(sums)
start_victim

for BACKEND in $BACKENDS; do
	U=""
	echo "== backend $BACKEND: $(service_url)"
	DEV_CHANGED=""
	for c in $CASES; do
		selected "$c" && run_case "$c"
	done
	if [ -n "$DEV_CHANGED" ]; then
		n_run=$((n_run + 1))
		n_failed=$((n_failed + 1))
		set -- $DEV_CHANGED
		some=$(echo "$DEV_CHANGED" | cut -d' ' -f2-6)
		[ $# -le 5 ] || some="$some ..."
		msg="host device nodes changed during $# cases ($some); the first: $(tr '\n' ';' <"$T/cases/$BACKEND/$1/dev.diff" | sed 's/;$//') (put back after each case)"
		echo "host_dev_invariant [$BACKEND]: FAIL: $msg"
		echo "host_dev_invariant [$BACKEND]: $msg" >>"$T/failures"
	fi
done
BACKEND=-
for c in $ONCE_CASES; do
	selected "$c" && run_case "$c"
done

echo "== $n_run cases run, $((n_run - n_failed)) passed, $n_failed failed"
if [ "$n_failed" -gt 0 ]; then
	echo "== failures:"
	cat "$T/failures"
	exit 1
fi
echo ok
