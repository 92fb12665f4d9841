#!/bin/sh
# `make install DESTDIR=...` puts the daemon, its man page, the OpenAPI description and the
# systemd unit where they belong, the unit names the installed daemon, the man page and
# the unit pass their linters (when groff and systemd-analyze are there), and
# `make uninstall` takes every file away again. TAP out.
set -u
builddir=${GLR_BUILDDIR:-.}
srcdir=${GLR_SRCDIR:-.}
make=${GLR_MAKE:-make}
work=$(mktemp -d "${TMPDIR:-/tmp}/greedylr-install-XXXXXX")
dest=$work/root
. "${GLR_SRCDIR:-.}/tests/tap.sh"

skip() {
    n=$((n + 1))
    echo "ok $n - $1 # SKIP $2"
}

# Shows a file as TAP diagnostics.
show() {
    sed 's/^/# /' "$1"
}

# The make of the test suite must not lend its job server to this one.
run_make() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $make -C "$builddir" "$@" >"$work/make.log" 2>&1 || {
        show "$work/make.log"
        return 1
    }
}

# The one installed file whose path ends with $1 (a path under $dest), or nothing.
installed() {
    found=$(find "$dest" -type f -path "*$1")
    [ "$(printf '%s\n' "$found" | grep -c .)" = 1 ] && printf '%s\n' "$found"
}

check "make install DESTDIR=... succeeds" run_make install DESTDIR="$dest"

daemon=$(installed /bin/greedylrd)
check "the daemon is installed and runs" sh -c "[ -x '$daemon' ] && '$daemon' --version >/dev/null"

man=$(installed /man8/greedylrd.8)
check "the man page is installed" [ -n "$man" ]
if command -v groff >/dev/null 2>&1; then
    groff -man -Tutf8 -ww -z "$man" >"$work/groff.log" 2>&1
    check "the man page formats without a warning" [ ! -s "$work/groff.log" ]
    show "$work/groff.log"
else
    skip "the man page formats without a warning" "groff is not installed"
fi

# Every option and subcommand the daemon's --help names, the man page documents.
undocumented() {
    for option in $("$daemon" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        grep -q -- "$(printf '%s' "$option" | sed 's/-/\\\\-/g')" "$man" || echo "$option"
    done
    for command in $("$daemon" --help 2>&1 | sed -n 's/^ *greedylrd \([a-z]\{2,\}\) .*/\1/p'); do
        grep -q "^\\.B greedylrd $command" "$man" || echo "$command"
    done
}
undocumented >"$work/undocumented.txt"
check "the man page documents every option of --help" [ ! -s "$work/undocumented.txt" ]
show "$work/undocumented.txt"

spec=$(installed /greedylr/openapi.yaml)
check "the OpenAPI description is installed" cmp -s "$spec" "$srcdir/api/openapi.yaml"

# The dashboard: its page, scripts and styles with their compressed copies, and the API
# description it serves, all in the one directory that the daemon reads by default.
page=$(installed /greedylr/dashboard/index.html)
check "the dashboard is installed" [ -n "$page" ]
ui=$(dirname "$page")
for f in app.js style.css dygraph.min.js dygraph.min.css openapi.yaml; do
    check "the dashboard's $f is installed with its gzip copy" \
        sh -c "[ -s '$ui/$f' ] && gzip -dc '$ui/$f.gz' | cmp -s - '$ui/$f'"
done
check "the daemon's default dashboard directory is the installed one" \
    sh -c "'$daemon' --help | grep -q -- '${ui#"$dest"}'"

if [ "${GLR_UNIT_INSTALLED:-yes}" = yes ]; then
    unit=$(installed /system/greedylrd.service)
    check "the systemd unit is installed" [ -n "$unit" ]
    bindir=$(dirname "${daemon#"$dest"}")
    check "its ExecStart is the installed daemon" grep -q "^ExecStart=$bindir/greedylrd " "$unit"
    check "nothing is left to substitute" sh -c "! grep -n '@[a-z_]*@' '$unit'"
    check "it is Type=notify, with a state directory" sh -c \
        "grep -qx 'Type=notify' '$unit' && grep -qx 'StateDirectory=greedylr' '$unit'"
    if command -v systemd-analyze >/dev/null 2>&1; then
        # Verified as installed, but pointing at the daemon under DESTDIR, which exists.
        sed "s|^ExecStart=$bindir/|ExecStart=$(dirname "$daemon")/|" "$unit" \
            >"$work/greedylrd.service"
        systemd-analyze verify --man=no "$work/greedylrd.service" >"$work/verify.log" 2>&1
        status=$?
        check "systemd-analyze verify finds nothing to say (exit $status)" \
            sh -c "[ $status = 0 ] && [ ! -s '$work/verify.log' ]"
        show "$work/verify.log"
    else
        skip "systemd-analyze verify finds nothing to say" "systemd-analyze is not installed"
    fi
else
    skip "the systemd unit is installed" "configured --with-systemdsystemunitdir=no"
fi

check "make uninstall DESTDIR=... succeeds" run_make uninstall DESTDIR="$dest"
left=$(find "$dest" -type f | sed "s|^$dest||")
check "make uninstall leaves no file behind" [ -z "$left" ]
[ -n "$left" ] && printf '# left: %s\n' $left

echo "1..$n"
rm -rf "$work"
exit $failed
