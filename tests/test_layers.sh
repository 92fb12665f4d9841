#!/bin/sh
# The shape of src/ (contrib/dev/layers.sh): calls go down only, internals stay in their
# folder, the core is pure, files stay short, and every external name has a module prefix.
# TAP out.
set -u
srcdir=${GLR_SRCDIR:-.}
builddir=${GLR_BUILDDIR:-.}
work=$(mktemp -d "${TMPDIR:-/tmp}/greedylr-layers-XXXXXX")
. "$srcdir/tests/tap.sh"

core="$builddir/src/libglrcore.a"
server="$builddir/src/libglrserver.a"
check "both libraries are built" test -f "$core" -a -f "$server"
out=$(sh "$srcdir/contrib/dev/layers.sh" "$srcdir" "$core" "$server")
status=$?
[ -z "$out" ] || echo "$out" | sed 's/^/# /'
check "src/ keeps its layers (contrib/dev/layers.sh)" [ "$status" = 0 ]

# The checker itself: a tree that breaks each rule once must fail, naming each break.
mkdir -p "$work/src/base" "$work/src/core" "$work/src/svc" "$work/src/http"
echo '#include "svc/svc.h"' > "$work/src/base/up.h"
echo '#include "svc/svc_int.h"' > "$work/src/http/inside.c"
echo '#include "base/log.h"' > "$work/src/core/impure.c"
echo '#include "svc.h"' > "$work/src/http/bare.c"
: > "$work/src/svc/svc.h"
: > "$work/src/svc/svc_int.h"
: > "$work/src/base/log.h"
awk 'BEGIN { for (i = 0; i < 801; i++) print "/* */" }' > "$work/src/svc/long.c"
bad=$(sh "$srcdir/contrib/dev/layers.sh" "$work")
check "a broken tree fails the check" [ $? = 1 ]
check "it names an include of a higher layer" grep -q 'base/up.h: includes "svc/svc.h"' <<EOT
$bad
EOT
check "it names an include of another folder's internals" grep -q 'http/inside.c.*internals' <<EOT
$bad
EOT
check "it names an impure core" grep -q 'core/impure.c: the core is pure' <<EOT
$bad
EOT
check "it names an include without its folder" grep -q 'http/bare.c.*without its folder' <<EOT
$bad
EOT
check "it names a file that is too long" grep -q 'svc/long.c: 801 lines' <<EOT
$bad
EOT
rm -rf "$work"
echo "1..$n"
exit "$failed"
