#!/bin/sh
# Runs one test program under valgrind memcheck (configure --enable-valgrind). Any error,
# or memory that is definitely lost, fails the test.
here=$(dirname "$0")
# memcheck runs code 20 to 50 times slower: stretch the libcheck timeouts to match.
CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-20}
export CK_TIMEOUT_MULTIPLIER
exec "${VALGRIND:-valgrind}" --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --suppressions="$here/valgrind.supp" "$@"
