#!/bin/sh
# Installs every Debian package kiln needs to build, test and demo; with --bench
# also the peers the benchmarks compare against. Idempotent: does nothing when all
# packages are present, and runs apt-get update only when something is missing.
set -eu

PACKAGES="
build-essential pkg-config meson ninja-build
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
libfuse3-dev fuse3
liblmdb-dev libzstd-dev libjansson-dev libsystemd-dev libseccomp-dev libssl-dev
libcmocka-dev libsimde-dev libmicrohttpd-dev
python3 python3-grpcio python3-protobuf protobuf-compiler-grpc
runc crun busybox-static util-linux procps haproxy openssl
b3sum nix-bin help2man openssh-server systemd
clang libclang-rt-14-dev
"
BENCH_PACKAGES="hyperfine socat bubblewrap casync"

[ "${1:-}" = "--bench" ] && PACKAGES="$PACKAGES $BENCH_PACKAGES"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
