#!/bin/sh
# kiln import / export / cat / ls against the default embedded store and
# against explicit store URLs.
. "$(dirname "$0")/lib.sh"

src="$T/src"
mkdir -p "$src/a/b/c" "$src/empty" "$src/with space"
printf 'hello\n' >"$src/a/hello.txt"
: >"$src/a/b/empty-file"
printf '#!/bin/sh\necho hi\n' >"$src/a/run.sh"
chmod +x "$src/a/run.sh"
printf 'same bytes' >"$src/plain"
printf 'same bytes' >"$src/exec"
chmod +x "$src/exec"
head -c 5000000 /dev/urandom >"$src/a/b/c/big"
ln -s hello.txt "$src/a/rel-link"
ln -s /nix/store/somewhereelse "$src/abs-link"
ln -s does/not/exist "$src/dangling"
printf x >"$src/with space/new
line"
printf y >"$src/$(printf 'bad\377name')"

out=$(kiln import "$src")
node=$(echo "$out" | json node)
root=$(echo "$out" | json node.directory.digest)
[ "$(echo "$out" | json path)" = "$src" ] || fail "path not echoed"
[ -d "$KILN_HOME/blobs/chunks/b3" ] || fail "default blob store not under KILN_HOME"
[ -d "$KILN_HOME/directories" ] || fail "default directory store not under KILN_HOME"

kiln export "$node" "$T/out"
diff -r --no-dereference "$src" "$T/out" || fail "export differs from the source"
[ -x "$T/out/a/run.sh" ] && [ -x "$T/out/exec" ] && [ ! -x "$T/out/plain" ] || fail "modes"
[ "$(readlink "$T/out/dangling")" = does/not/exist ] || fail "dangling symlink target"
[ "$(readlink "$T/out/abs-link")" = /nix/store/somewhereelse ] || fail "absolute symlink"

# re-import of the export gives the same root
root2=$(kiln import "$T/out" | json node.directory.digest)
[ "$root" = "$root2" ] || fail "re-import digest $root2 != $root"

# export by b3: digest too; refuses to overwrite
kiln export "b3:$root" "$T/out2"
diff -r --no-dereference "$src" "$T/out2" || fail "export by digest differs"
expect_fail "refusing to overwrite" kiln export "$node" "$T/out"

# files and symlinks as roots
fnode=$(kiln import "$src/a/hello.txt" | json node)
[ "$(echo "$fnode" | json file.size)" = 6 ] || fail "file size"
digest=$(echo "$fnode" | json file.digest)
[ "$(kiln cat "b3:$digest")" = hello ] || fail "cat"
kiln export "$fnode" "$T/hello-copy"
cmp "$src/a/hello.txt" "$T/hello-copy" || fail "file export"
lnode=$(kiln import "$src/abs-link" | json node)
[ "$(echo "$lnode" | json symlink.target)" = "$(printf /nix/store/somewhereelse | base64)" ] \
	|| fail "symlink root"

# the big file reads back through cat
b3=$(kiln import "$src/a/b/c/big" | json node.file.digest)
kiln cat "b3:$b3" | cmp - "$src/a/b/c/big" || fail "cat big"

# ls lists the root Directory
kiln ls "b3:$root" >"$T/ls"
grep -q '^link .* abs-link -> /nix/store/somewhereelse$' "$T/ls" || fail "ls symlink line"
grep -q '^exec .* exec$' "$T/ls" || fail "ls exec line"
grep -q '^dir .* empty$' "$T/ls" || fail "ls dir line"
grep -q 'bad\\xffname' "$T/ls" || fail "ls escapes names"
kiln ls --json "b3:$root" | json files >/dev/null

# needles: contents, symlink targets and names
printf 'ref to 33l4p0pn0mybmqzaxfkpppyh7vx1c74p here' >"$src/refs"
mkdir "$src/n" && ln -s /nix/store/fn7zvafq26f0c8b17brs7s95s10ibfzs-emacs "$src/n/l"
out=$(kiln import --needle 33l4p0pn0mybmqzaxfkpppyh7vx1c74p --needle nothere \
	--needle fn7zvafq26f0c8b17brs7s95s10ibfzs --needle 'with space' "$src")
[ "$(echo "$out" | json needles)" = "[0, 2, 3]" ] || fail "needles: $(echo "$out" | json needles)"

# errors: one clear line naming the problem, non-zero exit, other paths still done
mkfifo "$src/fifo"
expect_fail "unsupported file type at $src/fifo: fifo" kiln import "$src"
rm "$src/fifo"
expect_fail "unable to stat $T/nope" kiln import "$T/nope"
out=$(kiln import "$T/nope" "$src/a/hello.txt" 2>/dev/null) && fail "exit status"
echo "$out" | grep -q '"path": *"'"$src/a/hello.txt" || fail "later path not imported"
expect_fail "blob b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
	kiln cat b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
expect_fail "directory b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
	kiln ls b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
expect_fail "directory b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
	kiln export b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "$T/never"
[ ! -e "$T/never" ] || fail "failed export left something"
ls "$T" | grep -q kiln-export && fail "failed export left a temporary"
expect_fail "invalid digest" kiln cat b3:nope
expect_fail "unknown type: http" kiln import --blob-service-addr http://foo.example/test "$src"
expect_fail "redb is not supported" kiln import --directory-service-addr redb:///x "$src"
expect_fail "memory:// takes no host" kiln ls --directory-service-addr memory://foo "b3:$root"

# explicit URLs through the environment
BLOB_SERVICE_ADDR="objectstore+file://$T/b2" DIRECTORY_SERVICE_ADDR="lmdb://$T/d2" \
	kiln import "$src" >/dev/null
[ -d "$T/b2/chunks" ] && [ -d "$T/d2" ] || fail "env store URLs not used"
echo ok
