# TAP for the shell tests: `. tests/tap.sh`, then `check WHAT COMMAND...` per assertion,
# and the plan ("1..$n") at the end; $failed is 1 once any check failed.
n=0
failed=0

# check WHAT COMMAND...: runs COMMAND and reports it as one test named WHAT.
check() {
    what=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $what"
    else
        echo "not ok $n - $what"
        failed=1
    fi
}

# Ends a test that ran a daemon: stops it (pid in $pid) and checks it stopped cleanly,
# shows its log ($work/daemon.log) when something failed, prints the plan, removes
# $work, and exits with the verdict.
finish() {
    if [ -n "${pid:-}" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid"
        status=$?
        pid=""
        check "the daemon stops cleanly on SIGTERM (exit $status)" [ "$status" = 0 ]
    fi
    [ "$failed" = 0 ] || sed 's/^/# daemon: /' "$work/daemon.log" 2>/dev/null
    echo "1..$n"
    rm -rf "$work"
    [ "$failed" = 0 ]
    exit $?
}
