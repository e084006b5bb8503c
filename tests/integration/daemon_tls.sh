#!/bin/sh
# The daemon serving TLS itself, on 127.0.0.1, with certificates made here by
# a CA of the test's: the CLI trusts it through ?ca=, Python grpcio through
# its own credentials; with --tls-client-ca only clients holding a
# certificate that CA signed get in (mTLS). Plaintext, an unknown CA, a
# client certificate from another CA and bad daemon options each fail with
# one line.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || fail "openssl is not installed"

# --- a CA, a server certificate for localhost and 127.0.0.1, clients ---
P=$T/pki
mkdir "$P"
ca() { # ca NAME: a self-signed CA
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/$1.key" -out "$P/$1.pem" -days 1 \
		-subj "/CN=$1" 2>/dev/null
}
signed() { # signed NAME CA EXT: a key and a certificate CA signed
	openssl req -newkey rsa:2048 -nodes -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$1" \
		2>/dev/null
	printf '%s\n' "$3" >"$P/$1.ext"
	openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.pem" -CAkey "$P/$2.key" -CAcreateserial \
		-days 1 -extfile "$P/$1.ext" -out "$P/$1.pem" 2>/dev/null
}
ca ca
ca other
signed server ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
signed client ca "extendedKeyUsage=clientAuth"
signed stranger other "extendedKeyUsage=clientAuth"

mkdir -p "$T/tree/d" && echo hello >"$T/tree/d/f"
digest=$(kiln import --blob-service-addr memory:// --directory-service-addr memory:// \
	"$T/tree/d/f" | json node.file.digest)
one_line() { [ "$(wc -l <"$T/.stderr")" = 1 ] || fail "more than one line: $(cat "$T/.stderr")"; }

# health through Python grpcio: SERVING (field 1 = 1) or the failure's code
cat >"$T/health.py" <<'PY'
import sys, grpc
addr, ca = sys.argv[1], open(sys.argv[2], "rb").read()
key = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else None
cert = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else None
creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
with grpc.secure_channel(addr, creds) as ch:
    check = ch.unary_unary("/grpc.health.v1.Health/Check")
    try:
        print("SERVING" if check(b"", timeout=10) == b"\x08\x01" else "NOT SERVING")
    except grpc.RpcError as e:
        print(e.code().name)
PY

# --- TLS, no client certificates ---
start_daemon -l 127.0.0.1:0 -l "$T/plain.sock" --tls-cert "$P/server.pem" --tls-key "$P/server.key"
port=$(echo "$DAEMON_LISTEN" | sed 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/')
url="grpc+https://127.0.0.1:$port?ca=$P/ca.pem"
out=$(kiln import --blob-service-addr "$url" --directory-service-addr "$url" "$T/tree") ||
	fail "import over the daemon's TLS"
[ "$(kiln cat --blob-service-addr "$url" "b3:$digest")" = hello ] || fail "cat over TLS"
kiln export --blob-service-addr "$url" --directory-service-addr "$url" \
	"$(echo "$out" | json node)" "$T/back"
diff -r "$T/tree" "$T/back" || fail "export over TLS"
# by name too (the certificate names localhost)
[ "$(kiln cat --blob-service-addr "grpc+https://localhost:$port?ca=$P/ca.pem" "b3:$digest")" = hello ] ||
	fail "cat over TLS to localhost"
[ "$($PY "$T/health.py" "127.0.0.1:$port" "$P/ca.pem")" = SERVING ] || fail "grpcio over TLS"
# the socket path stays plaintext (its file mode guards it)
[ "$(kiln cat --blob-service-addr "grpc+unix://$T/plain.sock" "b3:$digest")" = hello ] ||
	fail "cat over the plaintext unix socket"

# an unknown CA, plaintext to a TLS port, an unreadable ca=: one line each
expect_fail "certificate verify failed" \
	kiln cat --blob-service-addr "grpc+https://127.0.0.1:$port?ca=$P/other.pem" "b3:$digest"
one_line
expect_fail "BlobService/Stat on .*failed to connect" kiln cat --blob-service-addr "grpc+http://127.0.0.1:$port" "b3:$digest"
one_line
expect_fail "cannot read ca= file $T/nope.pem: No such file or directory" \
	kiln cat --blob-service-addr "grpc+https://127.0.0.1:$port?ca=$T/nope.pem" "b3:$digest"
one_line
expect_fail "needs both cert= and key=" \
	kiln cat --blob-service-addr "grpc+https://127.0.0.1:$port?ca=$P/ca.pem&cert=$P/client.pem" \
	"b3:$digest"
one_line
expect_fail "unknown parameter 'ca'" \
	kiln cat --blob-service-addr "grpc+http://127.0.0.1:$port?ca=$P/ca.pem" "b3:$digest"
one_line
stop_daemon "$DAEMON_PID"

# --- mTLS: a client certificate from the CA is required ---
start_daemon -l 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key "$P/server.key" \
	--tls-client-ca "$P/ca.pem"
port=$(port_of "$DAEMON_LISTEN")
base="grpc+https://127.0.0.1:$port?ca=$P/ca.pem"
[ "$(kiln cat --blob-service-addr "$base&cert=$P/client.pem&key=$P/client.key" "b3:$digest")" = hello ] ||
	fail "cat with a client certificate"
expect_fail "BlobService/Stat on .*failed to connect" kiln cat --blob-service-addr "$base" "b3:$digest"
one_line
expect_fail "BlobService/Stat on .*failed to connect" \
	kiln cat --blob-service-addr "$base&cert=$P/stranger.pem&key=$P/stranger.key" "b3:$digest"
one_line
[ "$($PY "$T/health.py" "127.0.0.1:$port" "$P/ca.pem" "$P/client.key" "$P/client.pem")" = SERVING ] ||
	fail "grpcio with a client certificate"
[ "$($PY "$T/health.py" "127.0.0.1:$port" "$P/ca.pem")" = UNAVAILABLE ] ||
	fail "grpcio without a client certificate got in"
[ "$($PY "$T/health.py" "127.0.0.1:$port" "$P/ca.pem" "$P/stranger.key" "$P/stranger.pem")" = UNAVAILABLE ] ||
	fail "grpcio with another CA's certificate got in"
stop_daemon "$DAEMON_PID"

# --- bad daemon options: one line, nothing served ---
expect_fail "go together" kiln daemon -l 127.0.0.1:0 --tls-cert "$P/server.pem"
expect_fail "needs --tls-cert" kiln daemon -l 127.0.0.1:0 --tls-client-ca "$P/ca.pem"
expect_fail "tls-key $T/nope: No such file or directory" \
	kiln daemon -l 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key "$T/nope"
one_line
expect_fail "TLS key: no PEM PRIVATE KEY" \
	kiln daemon -l 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key "$P/server.pem"
one_line
expect_fail "does the key belong to the certificate" \
	kiln daemon -l 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key "$P/client.key"
one_line
expect_fail "sd-listen cannot serve TLS" \
	kiln daemon -l sd-listen --tls-cert "$P/server.pem" --tls-key "$P/server.key"
one_line
echo ok
