#!/bin/sh
# grpc+https:// clients: kiln behind a TLS-terminating HTTP/2 proxy (haproxy)
# with a certificate made now. Trusted (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), the
# CLI works through it; untrusted, it fails with one clear line.
. "$(dirname "$0")/lib.sh"
command -v haproxy >/dev/null || fail "haproxy is not installed"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
	-subj /CN=localhost -addext "subjectAltName=DNS:localhost" 2>/dev/null
cat "$T/cert.pem" "$T/key.pem" >"$T/both.pem"
start_daemon -l "$T/kiln.sock" --build-service-addr dummy://
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/haproxy.cfg" <<CFG
global
  log stderr format raw local0 err
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 127.0.0.1:$port ssl crt $T/both.pem alpn h2
  default_backend kiln
backend kiln
  server k unix@$T/kiln.sock proto h2
CFG
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
hpid=$!
cleanup_hooks="kill $hpid 2>/dev/null; $cleanup_hooks"
i=0
until $PY -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "haproxy did not start: $(cat "$T/haproxy.log")"
	sleep 0.05
done

url="grpc+https://localhost:$port"
mkdir -p "$T/tree/d" && echo hello >"$T/tree/d/f"
out=$(GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=$T/cert.pem kiln import --blob-service-addr "$url" \
	--directory-service-addr "$url" "$T/tree") || fail "import over TLS"
digest=$(kiln import --blob-service-addr memory:// --directory-service-addr memory:// \
	"$T/tree/d/f" | json node.file.digest)
[ "$(GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=$T/cert.pem kiln cat --blob-service-addr "$url" "b3:$digest")" = hello ] \
	|| fail "cat over TLS"
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=$T/cert.pem kiln export --blob-service-addr "$url" \
	--directory-service-addr "$url" "$(echo "$out" | json node)" "$T/back"
diff -r "$T/tree" "$T/back" || fail "export over TLS"

# an untrusted certificate: one line naming the problem
expect_fail "certificate verify failed" kiln cat --blob-service-addr "$url" "b3:$digest"
[ "$(wc -l <"$T/.stderr")" = 1 ] || fail "more than one line: $(cat "$T/.stderr")"
echo ok
