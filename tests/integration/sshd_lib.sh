# An sshd for the Nix remote-builder tests and benchmarks. Source it after
# lib.sh (it uses $PY, fail and cleanup_hooks).
#
# start_sshd DIR [SSHOPT...]: makes a host key and a client key in DIR, starts
# /usr/sbin/sshd on a free 127.0.0.1 port that lets in root with that client
# key only, waits until it accepts the key, and stops it on exit. Sets S
# (DIR), SSH_PORT, SSH_KEY (the client's private key) and exports NIX_SSHOPTS
# (the options Nix passes to ssh; SSHOPT... are appended, e.g. a master
# connection's ControlMaster/ControlPath/ControlPersist).
start_sshd() {
	S=$1
	shift
	mkdir -m 700 "$S"
	ssh-keygen -q -t ed25519 -N '' -f "$S/host" -C host
	ssh-keygen -q -t ed25519 -N '' -f "$S/id" -C client
	SSH_KEY=$S/id
	cp "$S/id.pub" "$S/authorized_keys"
	SSH_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat >"$S/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $S/host
AuthorizedKeysFile $S/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $S/sshd.pid
AllowUsers root
X11Forwarding no
AllowTcpForwarding no
CFG
	mkdir -p /run/sshd
	/usr/sbin/sshd -D -e -f "$S/sshd_config" 2>"$S/sshd.log" &
	sshd_pid=$!
	cleanup_hooks="kill $sshd_pid 2>/dev/null || true; $cleanup_hooks"
	echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$S/host.pub")" >"$S/known_hosts"
	NIX_SSHOPTS="-F /dev/null -p $SSH_PORT -o UserKnownHostsFile=$S/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes"
	for o in "$@"; do NIX_SSHOPTS="$NIX_SSHOPTS $o"; done
	export NIX_SSHOPTS
	local i=0
	# shellcheck disable=SC2086 # NIX_SSHOPTS is a list of words, as Nix splits it
	until ssh $NIX_SSHOPTS -i "$SSH_KEY" root@127.0.0.1 true 2>"$S/ssh.err"; do
		i=$((i + 1))
		[ $i -lt 100 ] || { cat "$S/ssh.err" "$S/sshd.log" >&2; fail "sshd did not accept our key"; }
		sleep 0.1
	done
}
