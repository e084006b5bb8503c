#!/bin/sh
# The main job on the embedded local store: a hermetic build. A static busybox
# is imported as the build's only input; a script running in the sandbox writes
# an output that refers to that input; kiln ingests the output, finds the
# reference, and exports the result. Before that, the store basics: hash,
# import, list, export.
set -eu
cd "$(dirname "$0")/.."
kiln=$PWD/build/kiln
work=$(mktemp -d /tmp/kiln-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Builds are set up as an unprivileged user, who must be able to walk down
# to the bundles under $KILN_HOME (mktemp makes the directory 0700).
chmod 0711 "$work"
export KILN_HOME="${KILN_HOME:-$work/home}"

say() { printf '\n== %s\n' "$*"; }

say "kiln hash (b3sum-compatible)"
printf 'Hello World!' >"$work/hello.txt"
$kiln hash "$work/hello.txt"

say "kiln import a small tree into the embedded store ($KILN_HOME)"
mkdir -p "$work/tree/bin" "$work/tree/share"
cp "$work/hello.txt" "$work/tree/share/hello.txt"
printf '#!/bin/sh\necho hello\n' >"$work/tree/bin/hello"
chmod +x "$work/tree/bin/hello"
ln -s ../share/hello.txt "$work/tree/bin/README"
out=$($kiln import "$work/tree")
echo "$out"
root=$(echo "$out" | sed -n 's/.*"digest": *"\([^"]*\)".*/\1/p')
$kiln ls "b3:$root"
$kiln export "b3:$root" "$work/tree-copy"
diff -r --no-dereference "$work/tree" "$work/tree-copy" && echo "exported tree matches the original"

say "kiln run: a hermetic build with busybox as its only input"
cat <<'SCRIPT'
  /inputs/busybox sh -c '
    mkdir -p /out/bin
    echo "#!/inputs/busybox sh" > /out/bin/greet
    echo "echo built by \$(/inputs/busybox uname -s) in a sandbox" >> /out/bin/greet
    chmod +x /out/bin/greet
    /inputs/busybox ls /inputs > /out/inputs-seen'
SCRIPT
$kiln run --input busybox=/bin/busybox --output out --export "$work/result" -- \
	/inputs/busybox sh -c '
	mkdir -p /out/bin
	echo "#!/inputs/busybox sh" > /out/bin/greet
	echo "echo built by \$(/inputs/busybox uname -s) in a sandbox" >> /out/bin/greet
	chmod +x /out/bin/greet
	/inputs/busybox ls /inputs > /out/inputs-seen'

say "the exported result"
find "$work/result" | sort | sed "s|$work/||"
echo "--- result/out/bin/greet:"
cat "$work/result/out/bin/greet"
