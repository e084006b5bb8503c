#!/bin/sh
# kiln import / export / cat / ls against a running kiln daemon, through
# grpc+unix:// and grpc+http://127.0.0.1:PORT, plus the channel URL rules
# and wait-connect.
. "$(dirname "$0")/lib.sh"

start_daemon -l "$T/kiln.sock" -l 127.0.0.1:0 \
	--blob-service-addr memory:// --directory-service-addr "lmdb://$T/dirs"
port=$(port_of "$(echo "$DAEMON_LISTEN" | sed 's/.*, //')")

src="$T/src"
mkdir -p "$src/a/b" "$src/empty"
printf 'hello\n' >"$src/a/hello.txt"
: >"$src/a/b/empty-file"
printf '#!/bin/sh\necho hi\n' >"$src/a/run.sh"
chmod +x "$src/a/run.sh"
head -c 3500000 /dev/urandom >"$src/a/b/big"
head -c 1048577 /dev/urandom >"$src/a/mib-plus-one"
ln -s hello.txt "$src/a/rel-link"

for url in "grpc+unix://$T/kiln.sock" "grpc+http://127.0.0.1:$port?wait-connect=1"; do
	echo "== $url"
	set -- --blob-service-addr "$url" --directory-service-addr "$url"
	out=$(kiln import "$@" "$src")
	root=$(echo "$out" | json node.directory.digest)
	rm -rf "$T/exp"
	kiln export "$@" "b3:$root" "$T/exp"
	diff -r "$src" "$T/exp" || fail "export through $url differs"
	[ -x "$T/exp/a/run.sh" ] || fail "mode lost through $url"
	big=$(kiln import "$@" "$src/a/b/big" | json node.file.digest)
	kiln cat "$@" "b3:$big" | cmp - "$src/a/b/big" || fail "cat through $url"
	[ "$(b3sum --no-names "$src/a/b/big")" = "$(echo "$big" | base64 -d | od -An -tx1 | tr -d ' \n')" ] \
		|| fail "digest of big differs from b3sum"
	kiln ls "$@" "b3:$root" >"$T/ls"
	grep -q '^dir .* a$' "$T/ls" && grep -q '^dir .* empty$' "$T/ls" || fail "ls through $url"
	expect_fail "blob b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
		kiln cat "$@" b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
	expect_fail "directory b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found" \
		kiln ls "$@" b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
done

# the same store is seen through both transports
kiln ls --directory-service-addr "grpc+unix://$T/kiln.sock" "b3:$root" >/dev/null

# channel URLs
expect_fail "host may not be set" kiln ls --directory-service-addr grpc+unix://host.example/x "b3:$root"
expect_fail "path may not be set" kiln ls --directory-service-addr grpc+http://localhost/x "b3:$root"
expect_fail "unsupported transport" kiln ls --directory-service-addr grpc+ftp://localhost "b3:$root"
expect_fail "cannot connect" kiln ls --directory-service-addr "grpc+unix://$T/nope.sock?wait-connect=1" "b3:$root"
# lazy by default: the failure comes with the first call
expect_fail "DirectoryService/Get on grpc+unix://$T/nope.sock" \
	kiln ls --directory-service-addr "grpc+unix://$T/nope.sock" "b3:$root"
expect_fail "cannot connect" kiln ls --directory-service-addr "grpc+http://127.0.0.1:1?wait-connect=1" "b3:$root"

stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
echo ok
