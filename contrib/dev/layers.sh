#!/bin/sh
# The shape of src/, checked: run by `make check` (tests/test_layers.sh) and by hand as
#   sh contrib/dev/layers.sh [SRCDIR] [LIBRARY.a ...]
# It prints one line per rule broken and exits 1 when any is. The rules:
#   1. Calls go down only: a file includes headers of its own folder or of a lower layer,
#      in the order of LAYERS below, and never by a bare name (the folder says the layer).
#   2. A folder's internals (*_int.h) are its own: no other folder includes them.
#   3. The scheduling core is pure: core/ includes from base/ only status.h, jsonx.h and
#      suggest.h, and no header of the C library that does I/O or keeps time.
#   4. No source file is longer than LINES_MAX lines.
#   5. With libraries given: every function or object they define with external linkage
#      starts with the name of a module (a header's name up to its first '_'), then '_'.
set -u
srcdir=${1:-.}
[ $# -gt 0 ] && shift
LAYERS="base core store svc http cli"
LINES_MAX=800
failed=0
tmp=$(mktemp "${TMPDIR:-/tmp}/layers-XXXXXX") || exit 2
trap 'rm -f "$tmp"' EXIT

fail() {
    echo "layers: $*"
    failed=1
}

rank() {
    i=0
    for l in $LAYERS; do
        [ "$l" = "$1" ] && { echo $i; return; }
        i=$((i + 1))
    done
    echo -1
}

# The libraries by absolute names, before the walk moves into src/.
libs=""
for lib in "$@"; do
    case $lib in /*) libs="$libs $lib" ;; *) libs="$libs $(pwd)/$lib" ;; esac
done
cd "$srcdir/src" || exit 2
for file in */*.c */*.h; do
    [ -f "$file" ] || continue
    layer=${file%%/*}
    own=$(rank "$layer")
    if [ "$own" -lt 0 ]; then
        fail "$file: $layer/ is not a layer ($LAYERS)"
        continue
    fi
    lines=$(wc -l < "$file")
    [ "$lines" -le "$LINES_MAX" ] || fail "$file: $lines lines, more than $LINES_MAX"
    # Project headers: #include "x/y.h" (config.h is autoconf's, above every layer).
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file" |
        while read -r header; do
            [ "$header" = config.h ] && continue
            case $header in
            */*) ;;
            *)
                echo "layers: $file: includes \"$header\" without its folder"
                continue
                ;;
            esac
            to=${header%%/*}
            theirs=$(rank "$to")
            if [ "$theirs" -lt 0 ] || [ ! -f "$header" ]; then
                echo "layers: $file: includes \"$header\", which is not in src/"
            elif [ "$theirs" -gt "$own" ]; then
                echo "layers: $file: includes \"$header\" of $to/, a layer above $layer/"
            elif [ "$to" != "$layer" ]; then
                case $header in
                *_int.h) echo "layers: $file: includes \"$header\", the internals of $to/" ;;
                esac
            fi
            if [ "$layer" = core ] && [ "$to" = base ]; then
                case $header in
                base/status.h | base/jsonx.h | base/suggest.h) ;;
                *) echo "layers: $file: the core is pure, and \"$header\" is not" ;;
                esac
            fi
        done > "$tmp" 2>&1 || true
    if [ -s "$tmp" ]; then
        cat "$tmp"
        failed=1
    fi
    : > "$tmp"
    if [ "$layer" = core ] &&
        grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(unistd|fcntl|pthread|time|sys/[a-z]+)\.h>' "$file"; then
        fail "$file: the core is pure, and includes a header of I/O, threads or time"
    fi
done

# Rule 5: the names each library defines for the linker.
if [ -n "$libs" ]; then
    modules=$(for h in */*.h; do
        b=${h##*/}
        b=${b%.h}
        echo "${b%%_*}"
    done | sort -u)
    for lib in $libs; do
        nm -g --defined-only "$lib" 2>/dev/null | awk 'NF == 3 { print $3 }' |
            grep -v '^__odr_asan\.' | while read -r symbol; do
                ok=0
                for m in $modules; do
                    case $symbol in "${m}"_*) ok=1 ;; esac
                done
                [ "$ok" = 1 ] || echo "layers: ${lib##*/}: $symbol has no module prefix"
            done > "$tmp"
        if [ -s "$tmp" ]; then
            cat "$tmp"
            failed=1
        fi
        : > "$tmp"
    done
fi
exit $failed
