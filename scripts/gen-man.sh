#!/bin/sh
# kiln(1), generated from the same text as --help: help2man turns `kiln --help`
# into the synopsis and verb list, and every verb's own --help becomes a
# subsection, so the page can never disagree with the program.
# usage: gen-man.sh KILN OUTPUT
set -eu
kiln=$1
out=$2
inc=$(mktemp)
trap 'rm -f "$inc"' EXIT

# The verbs a --help lists: indented lines under "verbs:".
verbs() {
        "$@" --help | awk '/^verbs:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on = 0}'
}

# Text as roff that is printed as is: backslashes escaped, no line taken for
# a request.
verbatim() {
        echo '.nf'
        sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
        echo '.fi'
}

{
        echo '[DESCRIPTION]'
        echo 'kiln runs build commands in a sandbox whose inputs are content-addressed'
        echo 'trees and whose outputs are hashed back into a content-addressed store.'
        echo 'It implements the Tvix castore and build protocols over gRPC'
        echo '(tvix.castore.v1, tvix.build.v1) and reads and writes Nix derivations,'
        echo 'store paths and NARs.'
        echo '[VERBS]'
        for v in $(verbs "$kiln"); do
                [ "$v" = nix ] && continue
                echo ".SS kiln $v"
                "$kiln" "$v" --help | verbatim
        done
        for v in $(verbs "$kiln" nix); do
                echo ".SS kiln nix $v"
                "$kiln" nix "$v" --help | verbatim
        done
        echo '[ENVIRONMENT]'
        echo '.TP'
        echo '.B KILN_HOME'
        echo 'Where the embedded store, the daemon socket and the build bundles live'
        echo '(default /var/lib/kiln for root, else $XDG_DATA_HOME/kiln).'
        echo '.TP'
        echo '.BR BLOB_SERVICE_ADDR ", " DIRECTORY_SERVICE_ADDR ", " BUILD_SERVICE_ADDR'
        echo 'Defaults of the --blob-service-addr, --directory-service-addr and'
        echo '--build-service-addr options.'
        echo '.TP'
        echo '.B KILN_LOG'
        echo 'debug: log every call (the daemon) and let gRPC log.'
        echo '[FILES]'
        echo '.TP'
        echo '.I $KILN_HOME/blobs, $KILN_HOME/directories'
        echo 'the embedded blob store (objectstore) and directory store (LMDB)'
        echo '.TP'
        echo '.I $KILN_HOME/kiln.sock'
        echo 'the daemon'"'"'s default listen address (mode 0600)'
        echo '[SEE ALSO]'
        echo 'docs/ARCHITECTURE.md, docs/OPERATIONS.md, docs/PROTOCOLS.md and'
        echo 'docs/SANDBOX.md in the kiln sources (installed under share/doc/kiln).'
} >"$inc"

help2man --no-info --no-discard-stderr --name='hermetic, content-addressed builds' \
        --include="$inc" --output="$out" "$kiln"
