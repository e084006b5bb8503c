#!/bin/sh
# kiln mount: a real FUSE mount of an imported tree, served by the CLI from
# the default embedded store. Needs root and a usable /dev/fuse; skips (exit
# 77) otherwise, or fails when KILN_TEST_MUST_RUN=1. Every mount made here is
# removed on every exit path.
. "$(dirname "$0")/lib.sh"
CHECK="$PY $(dirname "$0")/fuse_check.py"

why=""
if [ "$(id -u)" != 0 ]; then why="not root"
elif [ ! -c /dev/fuse ]; then why="no /dev/fuse"
elif ! (: <>/dev/fuse) 2>/dev/null; then why="cannot open /dev/fuse"
elif ! command -v fusermount3 >/dev/null; then why="no fusermount3 (package fuse3)"
fi
if [ -n "$why" ]; then
	[ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "FUSE unusable ($why) and KILN_TEST_MUST_RUN=1"
	echo "SKIP: FUSE unusable: $why"
	exit 77
fi

# Mount bookkeeping: on any exit, kill what we started and detach its mount.
M="$T/mnt"
mkdir -p "$M"
pids=""
cleanup_mounts() {
	for p in $pids; do kill -9 "$p" 2>/dev/null || :; done
	for _ in 1 2 3; do umount -l "$M" 2>/dev/null || break; done
}
cleanup_hooks="cleanup_mounts; $cleanup_hooks"
trap 'exit 1' INT TERM HUP
# Bounds every command that touches the mount: a hang fails the test.
t() { timeout 120 "$@"; }

# mount_bg LOG ARGS...: starts kiln mount in the background and waits for
# its ready line; $mpid is its pid.
mount_bg() {
	log=$1; shift
	"$KILN_BIN" mount "$@" >"$log" 2>&1 &
	mpid=$!
	pids="$pids $mpid"
	i=0
	until grep -q "mounted at" "$log"; do
		kill -0 "$mpid" 2>/dev/null || { cat "$log" >&2; fail "kiln mount died: $*"; }
		i=$((i + 1)); [ $i -lt 200 ] || fail "kiln mount not ready after 20 s"
		sleep 0.1
	done
}
# wait_exit PID: waits (bounded) for a kiln mount to exit; $status is its
# exit status (not in a subshell: only this shell can wait for it)
wait_exit() {
	i=0
	while [ -e "/proc/$1" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "kiln mount $1 did not exit"
		sleep 0.1
	done
	status=0
	wait "$1" || status=$?
}
is_mounted() { grep -q " $M fuse.kiln " /proc/self/mounts; }

# --- the tree ---
src="$T/src"
mkdir -p "$src/a/b/c" "$src/empty" "$src/a/empty2" "$src/with space" "$src/big dir"
printf 'hello\n' >"$src/a/hello.txt"
: >"$src/a/b/empty-file"
printf '#!/bin/sh\necho hi\n' >"$src/a/run.sh"
chmod +x "$src/a/run.sh"
printf 'same bytes' >"$src/plain"
printf 'same bytes' >"$src/plain2"
printf 'same bytes' >"$src/exec"
chmod +x "$src/exec"
head -c $((70 * 1024 * 1024 + 12345)) /dev/urandom >"$src/a/b/c/large"
head -c 3000000 /dev/urandom >"$src/a/medium"
ln -s hello.txt "$src/a/rel-link"
ln -s ../../plain "$src/a/b/up-link"
ln -s /nix/store/somewhereelse "$src/abs-link"
ln -s does/not/exist "$src/dangling"
printf x >"$src/with space/new
line"
printf y >"$src/$(printf 'bad\377name')"
$PY -c 'import sys
for i in range(10000): open(f"{sys.argv[1]}/f{i:05d}", "wb").write(str(i % 37).encode())' "$src/big dir"

out=$(kiln import "$src")
node=$(echo "$out" | json node)
root=$(echo "$out" | json node.directory.digest)
fnode=$(kiln import "$src/a/hello.txt" | json node)
lnode=$(kiln import "$src/abs-link" | json node)

# --- argument checks: one clear line each ---
expect_fail "missing MOUNTPOINT" kiln mount
expect_fail "expected at least one NAME=NODE" kiln mount "$M"
expect_fail "expected NAME=NODE, got 'src'" kiln mount "$M" src
expect_fail 'invalid name "a/b": cannot contain slashes' kiln mount "$M" "a/b=$node"
expect_fail 'invalid name "": cannot be empty' kiln mount "$M" "=$node"
expect_fail "duplicate name 'x'" kiln mount "$M" "x=$node" "x=b3:$root"
expect_fail "invalid node for 'x'" kiln mount "$M" "x={nope"
expect_fail "invalid node for 'x'" kiln mount "$M" "x=b3:nope"
expect_fail "directory b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
	kiln mount "$M" "x=b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
expect_fail "mount point $T/nope: No such file or directory" kiln mount "$T/nope" "x=$node"
expect_fail "invalid --threads" kiln mount --threads 0 "$M" "x=$node"
is_mounted && fail "a failed kiln mount left a mount"

# --- the mount ---
mount_bg "$T/m1.log" --threads 4 "$M" "src=$node" "bydigest=b3:$root" "hello=$fnode" \
	"link=$lnode"
grep -q "^kiln: mounted at $M (4 roots)$" "$T/m1.log" || fail "ready line: $(cat "$T/m1.log")"
is_mounted || fail "not in /proc/self/mounts"
grep " $M fuse.kiln " /proc/self/mounts | grep -q "ro,nosuid,nodev" || fail "mount options"
grep " $M fuse.kiln " /proc/self/mounts | grep -q allow_other && fail "allow_other by default"

t diff -r --no-dereference "$src" "$M/src" || fail "mounted tree differs from the source"
t diff -r --no-dereference "$src" "$M/bydigest" || fail "b3: root differs"
t cmp "$src/a/hello.txt" "$M/hello" || fail "file root"
[ "$(readlink "$M/link")" = /nix/store/somewhereelse ] || fail "symlink root"
[ "$(readlink "$M/src/a/rel-link")" = hello.txt ] || fail "relative symlink"
[ "$(readlink "$M/src/dangling")" = does/not/exist ] || fail "dangling symlink"
[ "$(cat "$M/src/a/b/up-link")" = "same bytes" ] || fail "following a symlink"
t $CHECK compare "$src" "$M/src"
[ "$(stat -c %a "$M/src/exec")" = 555 ] && [ "$(stat -c %a "$M/src/plain")" = 444 ] \
	|| fail "exec/plain modes"
[ "$(stat -c %i "$M/src/plain")" = "$(stat -c %i "$M/src/plain2")" ] || fail "plain inodes"
[ "$(stat -c %i "$M/src/plain")" != "$(stat -c %i "$M/src/exec")" ] || fail "exec shares inode"
[ "$(stat -c %h "$M")" = 4 ] || fail "root nlink $(stat -c %h "$M")" # 2 directory roots
"$M/src/a/run.sh" | grep -q hi || fail "executing from the mount"

# xattrs carry the digests that kiln ls shows
t $CHECK xattr "$M/src" user.tvix.castore.directory.digest "b3:$root"
fd=$(kiln ls "b3:$root" | awk '$NF == "plain" { print $2 }')
t $CHECK xattr "$M/src/plain" user.tvix.castore.blob.digest "$fd"

# read-only, missing names, root not listable without --list-root
t $CHECK erofs "$M/src" "$M/src/plain"
t $CHECK enoent "$M/src/nope" "$M/nope" "$M/sr" "$M/srcc" "$M/src/a/hello.txtx"
ls "$M" >/dev/null 2>"$T/err" && fail "root listed without --list-root"
grep -q "Operation not permitted" "$T/err" || fail "root listing error: $(cat "$T/err")"

# readdir: 10,000 entries with tiny buffers, stable offsets
t $CHECK getdents "$M/src/big dir" 10000

# concurrent readers: the large file 6 times, 2,000 small files 8 at a time
sum=$(sha256sum <"$src/a/b/c/large")
readers=""
for i in 1 2 3 4 5 6; do
	(t sha256sum <"$M/src/a/b/c/large" >"$T/sum.$i") &
	readers="$readers $!"
done
for p in $readers; do wait "$p" || fail "concurrent reader failed"; done
for i in 1 2 3 4 5 6; do
	[ "$(cat "$T/sum.$i")" = "$sum" ] || fail "concurrent reader $i got other bytes"
done
(cd "$M/src/big dir" && ls | head -2000 | t xargs -P 8 -n 50 sha256sum) | sort >"$T/small.out"
(cd "$src/big dir" && ls | head -2000 | xargs -n 50 sha256sum) | sort | cmp - "$T/small.out" \
	|| fail "concurrent small reads differ"

# SIGTERM: unmounts and exits 0
kill -TERM "$mpid"
wait_exit "$mpid"; [ "$status" = 0 ] || fail "exit status after SIGTERM: $status"
is_mounted && fail "still mounted after SIGTERM"

# --list-root, --no-xattr, --allow-other
mount_bg "$T/m2.log" -l --no-xattr --allow-other "$M" "src=$node" "hello=$fnode"
grep " $M fuse.kiln " /proc/self/mounts | grep -q allow_other || fail "allow_other not set"
[ "$(ls "$M" | tr '\n' ' ')" = "hello src " ] || fail "root listing: $(ls "$M")"
t $CHECK no-xattr "$M/src/plain"

# unmounted from outside: exits 0
fusermount3 -u "$M"
wait_exit "$mpid"; [ "$status" = 0 ] || fail "exit status after fusermount3 -u: $status"

# killed: the dead mount does not block the next one on the same point
mount_bg "$T/m3.log" "$M" "src=$node"
cat "$M/src/a/hello.txt" >/dev/null
kill -9 "$mpid"
wait "$mpid" 2>/dev/null || :
stat -f "$M" >/dev/null 2>&1 && fail "mount not dead after kill -9"
mount_bg "$T/m4.log" "$M" "src=$node"
grep -q "detached a dead FUSE mount at $M" "$T/m4.log" || fail "no note about the dead mount"
t cmp "$src/a/medium" "$M/src/a/medium" || fail "read after remount"
kill -INT "$mpid"
wait_exit "$mpid"; [ "$status" = 0 ] || fail "exit status after SIGINT: $status"
is_mounted && fail "a mount is left behind"

# the stores over gRPC, from a daemon on the same embedded store (gRPC
# clients start threads of their own: SIGTERM must still end it cleanly)
if kiln daemon --help >/dev/null 2>&1; then
	start_daemon -l "$T/d.sock"
	G="grpc+unix://$T/d.sock"
	mount_bg "$T/m6.log" --blob-service-addr "$G" --directory-service-addr "$G" "$M" "src=$node"
	t diff -r --no-dereference "$src/a" "$M/src/a" || fail "tree through gRPC stores"
	kill -TERM "$mpid"
	wait_exit "$mpid"; [ "$status" = 0 ] || fail "exit status after SIGTERM (gRPC): $status"
	is_mounted && fail "still mounted after SIGTERM (gRPC)"
	stop_daemon "$DAEMON_PID" || :
fi

# a blob missing from the store: EIO and a log line naming its digest
mkdir "$T/lost"
printf 'only here %s' "$T" >"$T/lost/gone"
printf 'also kept' >"$T/lost/kept"
lost=$(kiln import "$T/lost" | json node)
gone_b3=$(kiln ls "b3:$(echo "$lost" | json directory.digest)" | awk '$NF == "gone" { print $2 }')
gone_hex=$($PY -c 'import base64,sys; print(base64.b64decode(sys.argv[1][3:]).hex())' "$gone_b3")
n=$(find "$KILN_HOME/blobs" -type f -name "$gone_hex" | wc -l)
[ "$n" -ge 1 ] || fail "blob $gone_hex not found in the object store"
find "$KILN_HOME/blobs" -type f -name "$gone_hex" -delete
mount_bg "$T/m5.log" "$M" "lost=$lost"
t $CHECK errno EIO "$M/lost/gone"
[ "$(cat "$M/lost/kept")" = "also kept" ] || fail "other files of the tree"
kill -TERM "$mpid"
wait_exit "$mpid"; [ "$status" = 0 ] || fail "exit status after SIGTERM (missing blob): $status"
grep -q "blob $gone_b3" "$T/m5.log" || { cat "$T/m5.log" >&2; fail "no log line naming $gone_b3"; }
echo ok
