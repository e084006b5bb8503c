#!/bin/sh
# The main job on the embedded local store: hash a file, import a small tree,
# list it, export it back and check the round trip.
set -eu
cd "$(dirname "$0")/.."
kiln=./build/kiln
work=$(mktemp -d /tmp/kiln-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export KILN_HOME="${KILN_HOME:-$work/home}"

say() { printf '\n== %s\n' "$*"; }

mkdir -p "$work/tree/bin" "$work/tree/share/doc"
printf 'Hello World!' >"$work/tree/share/doc/hello.txt"
printf '#!/bin/sh\necho hello\n' >"$work/tree/bin/hello"
chmod +x "$work/tree/bin/hello"
ln -s ../share/doc/hello.txt "$work/tree/bin/README"

say "kiln hash (b3sum-compatible)"
$kiln hash "$work/tree/share/doc/hello.txt"

say "kiln import into the embedded store at $KILN_HOME"
out=$($kiln import "$work/tree")
echo "$out"
root=$(echo "$out" | sed -n 's/.*"digest": *"\([^"]*\)".*/\1/p')

say "kiln ls b3:$root"
$kiln ls "b3:$root"

say "kiln export and compare"
$kiln export "b3:$root" "$work/exported"
diff -r "$work/tree" "$work/exported" && echo "export matches the original tree"
