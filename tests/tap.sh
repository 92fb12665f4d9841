# TAP for the shell tests: `. tests/tap.sh`, then `check WHAT COMMAND...` per assertion
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
