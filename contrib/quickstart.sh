#!/bin/sh
# The README's two Quick start commands for a fresh Debian 12 machine:
#   contrib/quickstart.sh run    install what is missing, build, and run the daemon
#   contrib/quickstart.sh test   install what is missing, build with sanitizers, run every test
#   contrib/quickstart.sh bench  install what is missing, build optimized, run the benchmark
#   contrib/quickstart.sh bench-quality  the same for the training-quality benchmark
# Both work from the top of a fresh clone and exit non-zero on any failure.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)

# Debian packages the build and the tests need.
BUILD_PACKAGES="autoconf automake make gcc libc6-dev pkgconf libmicrohttpd-dev libcjson-dev \
libsqlite3-dev libgnutls28-dev check libjs-dygraphs gzip"
TEST_PACKAGES="valgrind curl python3 python3-yaml python3-jsonschema python3-pytest python3-venv \
python3-torch flit groff-base systemd gnutls-bin chromium chromium-driver python3-selenium"
BENCH_PACKAGES="wrk curl python3 valgrind"
QUALITY_PACKAGES="python3 python3-torch python3-sklearn python3-matplotlib"

say() { printf 'quickstart: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $*"
        exit 1
    fi
}

# Installs the named packages that are not installed yet, with one apt-get call.
install_missing() {
    missing=""
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
            missing="$missing $pkg"
        fi
    done
    [ -z "$missing" ] && return 0
    say "installing:$missing"
    as_root apt-get update -qq
    # shellcheck disable=SC2086 # the list is meant to split into words
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

# Generates the build system when it is not there yet (a fresh clone has none).
bootstrap() {
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
        say "generating the build system"
        autoreconf -fi
    fi
}

# build DIR CONFIGURE-ARGS...: configures (once) and builds in DIR.
build() {
    dir=$1
    shift
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/Makefile" ]; then
        (cd "$dir" && "$top/configure" "$@")
    fi
    make -C "$dir" -j"$(nproc)"
}

jobs=$(nproc)

case "${1:-}" in
run)
    install_missing $BUILD_PACKAGES
    bootstrap
    build build/release
    say "starting greedylrd on 127.0.0.1:8080 with ./greedylr.db (Ctrl-C stops it)"
    say "the dashboard: http://127.0.0.1:8080/"
    exec build/release/src/greedylrd --listen 127.0.0.1:8080 --db ./greedylr.db \
        --dashboard-dir build/release/ui
    ;;
test)
    install_missing $BUILD_PACKAGES $TEST_PACKAGES
    bootstrap
    say "building with ASan+UBSan and -Werror, running every test"
    build build/check --enable-sanitizers --enable-werror
    if ! make -C build/check -j"$jobs" check; then
        cat build/check/test-suite.log >&2 || true
        exit 1
    fi
    say "make distcheck: the release tarball builds and passes every test under valgrind"
    build build/dist
    make -C build/dist -j"$jobs" distcheck \
        DISTCHECK_CONFIGURE_FLAGS="--enable-valgrind --enable-werror"
    # The closing line CI reads: the sanitizer run's counts (distcheck repeats the same tests).
    passed=$(sed -n 's/^# PASS: *//p' build/check/test-suite.log)
    failed=$(sed -n 's/^# FAIL: *//p' build/check/test-suite.log)
    echo "tests: $passed passed, $failed failed"
    ;;
bench)
    install_missing $BUILD_PACKAGES $BENCH_PACKAGES
    bootstrap
    say "building without sanitizers and running the benchmark (a few minutes)"
    build build/release
    make -C build/release bench
    ;;
bench-quality)
    install_missing $BUILD_PACKAGES $QUALITY_PACKAGES
    bootstrap
    say "building without sanitizers and running the training-quality benchmark (~30 min)"
    build build/release
    make -C build/release bench-quality
    ;;
*)
    echo "usage: $0 run|test|bench|bench-quality" >&2
    exit 2
    ;;
esac
