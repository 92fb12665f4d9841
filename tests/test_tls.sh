#!/bin/sh
# HTTPS: makes a CA and a server certificate with certtool in a temporary directory, runs
# the daemon with them, talks to it with curl --cacert, and checks that plain HTTP and
# TLS 1.1 are refused while TLS 1.2 and 1.3 are served. TAP out.
set -u
daemon=${GLR_DAEMON:-src/greedylrd}
slow=${GLR_TEST_SLOW:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/greedylr-tls-XXXXXX")
pid=""
. "${GLR_SRCDIR:-.}/tests/tap.sh"


if ! command -v certtool >/dev/null 2>&1 || ! command -v gnutls-cli >/dev/null 2>&1; then
    echo "1..0 # SKIP certtool and gnutls-cli are needed (apt-get install gnutls-bin)"
    rm -rf "$work"
    exit 0
fi

# A CA, and a certificate for 127.0.0.1 that it signs. Never committed: made here, now.
cd "$work" || exit 1
printf 'cn = "greedylr test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' > ca.tmpl
printf 'cn = "127.0.0.1"\nip_address = "127.0.0.1"\ndns_name = "localhost"\ntls_www_server\nexpiration_days = 2\n' > server.tmpl
certtool --generate-privkey --key-type=ecdsa --outfile ca.key >/dev/null 2>&1 &&
    certtool --generate-self-signed --load-privkey ca.key --template ca.tmpl \
        --outfile ca.pem >/dev/null 2>&1 &&
    certtool --generate-privkey --key-type=ecdsa --outfile server.key >/dev/null 2>&1 &&
    certtool --generate-certificate --load-privkey server.key --load-ca-certificate ca.pem \
        --load-ca-privkey ca.key --template server.tmpl --outfile server.pem >/dev/null 2>&1
check "certtool makes a CA and a server certificate" [ -s server.pem ]
cd - >/dev/null || exit 1

# A key that does not belong to the certificate is refused at start, with a reason.
"$daemon" --listen 127.0.0.1:0 --db "$work/bad.db" --tls-cert "$work/server.pem" \
    --tls-key "$work/ca.key" > /dev/null 2> "$work/bad.log"
check "a certificate with the wrong key is refused at start" [ $? != 0 ]
check "... saying so" grep -q "certificate" "$work/bad.log"

mkfifo "$work/out"
# shellcheck disable=SC2086 # the wrapper is a command with options
${GLR_DAEMON_WRAPPER:-} "$daemon" --listen 127.0.0.1:0 --db "$work/test.db" \
    --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
    > "$work/out" 2> "$work/daemon.log" &
pid=$!
read -r line < "$work/out"
port=${line##*:}
check "the daemon says it listens on https ($line)" [ "${line#listening on https://}" != "$line" ]
[ -n "$port" ] || finish
base="https://127.0.0.1:$port"
timeout=$((10 * slow))

answer=$(curl -sS --max-time "$timeout" --cacert "$work/ca.pem" "$base/healthz")
check "curl --cacert gets /healthz over HTTPS" [ "$answer" = '{"status":"ok"}' ]
code=$(curl -sS --max-time "$timeout" --cacert "$work/ca.pem" -o /dev/null -w '%{http_code}' \
    -X PUT --json '{"lr":0.1}' "$base/v1/jobs/tls")
check "a job is created over HTTPS ($code)" [ "$code" = 201 ]
curl -sS --max-time "$timeout" --cacert "$work/ca.pem" --tlsv1.3 -o /dev/null "$base/healthz"
check "TLS 1.3 is served" [ $? = 0 ]
curl -sS --max-time "$timeout" --cacert "$work/ca.pem" --tlsv1.2 --tls-max 1.2 -o /dev/null \
    "$base/healthz"
check "TLS 1.2 is served" [ $? = 0 ]
curl -sS --max-time "$timeout" -o /dev/null "$base/healthz" 2>/dev/null
check "a client that does not trust the CA is refused" [ $? != 0 ]

code=$(curl -s --max-time "$timeout" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
check "plain HTTP gets no answer ($code)" [ "$code" = 000 ]

# gnutls-cli speaks TLS 1.1 when asked (curl's TLS library may not even try).
tls() {
    gnutls-cli --x509cafile="$work/ca.pem" --priority="NORMAL:-VERS-ALL:+VERS-TLS$1" \
        -p "$port" 127.0.0.1 < /dev/null > "$work/tls$1.log" 2>&1
}
tls 1.2
check "gnutls-cli completes a TLS 1.2 handshake" [ $? = 0 ]
tls 1.1
check "TLS 1.1 is refused" [ $? != 0 ]
tls 1.0
check "TLS 1.0 is refused" [ $? != 0 ]

answer=$(curl -sS --max-time "$timeout" --cacert "$work/ca.pem" "$base/healthz")
check "the daemon still serves after the refused handshakes" [ "$answer" = '{"status":"ok"}' ]

# The server certificate expires in two days: the daemon warned at start, naming it.
check "a certificate that expires soon is warned of at start" \
    grep -q "TLS certificate $work/server.pem expires at .*, in 1 day" "$work/daemon.log"

# An expired certificate is still served (the operator may have nothing else at hand), but
# the log says so at start; so does one not valid yet.
cd "$work" || exit 1
printf 'cn = "127.0.0.1"\nip_address = "127.0.0.1"\ntls_www_server\nactivation_date = "2020-01-01 00:00:00"\nexpiration_date = "2020-06-01 00:00:00"\n' > old.tmpl
printf 'cn = "127.0.0.1"\nip_address = "127.0.0.1"\ntls_www_server\nactivation_date = "2090-01-01 00:00:00"\nexpiration_date = "2091-01-01 00:00:00"\n' > future.tmpl
for name in old future; do
    certtool --generate-certificate --load-privkey server.key --load-ca-certificate ca.pem \
        --load-ca-privkey ca.key --template "$name.tmpl" --outfile "$name.pem" >/dev/null 2>&1
done
cd - >/dev/null || exit 1
started_with() {
    # shellcheck disable=SC2086 # the wrapper is a command with options
    ${GLR_DAEMON_WRAPPER:-} "$daemon" --listen 127.0.0.1:0 --db "$work/$1.db" \
        --tls-cert "$work/$1.pem" --tls-key "$work/server.key" > "$work/$1.out" 2> "$work/$1.log" &
    other=$!
    for _ in $(seq 1 $((50 * slow))); do
        grep -q "listening on" "$work/$1.out" 2>/dev/null && break
        sleep 0.1
    done
    kill -TERM "$other" 2>/dev/null
    wait "$other"
}
started_with old
check "an expired certificate is served after a warning" \
    grep -q "TLS certificate $work/old.pem expired at 2020-06-01T00:00:00.000Z" "$work/old.log"
started_with future
check "a certificate not valid yet is warned of" \
    grep -q "TLS certificate $work/future.pem is not valid before 2090-01-01" "$work/future.log"
finish
