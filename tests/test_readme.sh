#!/bin/sh
# Runs the README's curl walkthrough exactly as written against a daemon of our own (only
# its address is changed to the test's port), and checks what each line answers. TAP out.
set -u
srcdir=${GLR_SRCDIR:-.}
daemon=${GLR_DAEMON:-src/greedylrd}
work=$(mktemp -d "${TMPDIR:-/tmp}/greedylr-readme-XXXXXX")
pid=""
. "${GLR_SRCDIR:-.}/tests/tap.sh"


contains() { grep -q -- "$2" "$1"; }

# The walkthrough: the fenced block between the two markers.
sed -n '/<!-- walkthrough: begin -->/,/<!-- walkthrough: end -->/p' "$srcdir/README.md" |
    sed '/^<!--/d; /^```/d' > "$work/walkthrough.sh"
check "the README has a curl walkthrough" [ "$(grep -c '^curl' "$work/walkthrough.sh")" -ge 6 ]

mkfifo "$work/out"
# shellcheck disable=SC2086 # the wrapper is a command with options
${GLR_DAEMON_WRAPPER:-} "$daemon" --listen 127.0.0.1:0 --db "$work/test.db" \
    > "$work/out" 2> "$work/daemon.log" &
pid=$!
read -r line < "$work/out"
port=${line##*:}
check "the daemon says where it listens ($line)" [ -n "$port" ]
[ -n "$port" ] || finish

sed "s/127.0.0.1:8080/127.0.0.1:$port/g" "$work/walkthrough.sh" > "$work/run.sh"
sh -e "$work/run.sh" > "$work/answers" 2>&1
check "every line of the walkthrough succeeds" [ $? = 0 ]
sed -n 1p "$work/answers" > "$work/create"
sed -n 4p "$work/answers" > "$work/third"
check "the job is created" contains "$work/create" '"id":"demo"'
check "the third report raises the lr" \
    contains "$work/third" '"lr":0.10526315789473685,"event":"increase"'
check "the history holds three points" [ "$(grep -o '"step":' "$work/answers" | wc -l)" -ge 6 ]
check "the CSV export has its header" contains "$work/answers" '^step,loss,lr,event$'
check "the CSV export has the three rows" contains "$work/answers" '^2,1.95,0.10526315789473685,increase$'
check "a report asked for text answers the lr alone" \
    contains "$work/answers" '^next lr: 0\.10526315789473685$'
finish
