#!/bin/sh
# Runs protoc-c on one .proto and writes the generated .pb-c.c/.pb-c.h flat
# into OUTDIR (Meson outputs cannot live in subdirectories), rewriting the
# includes of imported protos to their flat names.
# usage: protoc-c-flat.sh PROTO_ROOT OUTDIR REL_PROTO
set -eu
root=$1 outdir=$2 rel=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc-c -I"$root" --c_out="$tmp" "$root/$rel"
base=${rel%.proto}
name=$(basename "$base")
for ext in c h; do
	sed -E 's@#include "([^"]*/)?([^/"]+\.pb-c\.h)"@#include "\2"@' \
		"$tmp/$base.pb-c.$ext" >"$outdir/$name.pb-c.$ext"
done
