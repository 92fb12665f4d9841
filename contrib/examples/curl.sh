#!/bin/sh
# The whole greedylr API from the shell, with curl: create a job, report losses, read the
# history as JSON and CSV, list jobs, finish the job, delete it.
#
#   sh contrib/examples/curl.sh [URL]      (default http://127.0.0.1:8080, or $GREEDYLR_URL)
#
# The job is named curl-example and the time, or $GREEDYLR_JOB. Each answer is printed after
# a comment line saying what was asked; the script stops at the first request that fails.
set -eu
url=${1:-${GREEDYLR_URL:-http://127.0.0.1:8080}}
job=${GREEDYLR_JOB:-curl-example-$(date -u +%Y%m%d-%H%M%S)-$$}

say() { printf '# %s\n' "$*"; }
# api METHOD PATH [JSON]: one request; prints the answer's body and fails on an error status.
api() {
    if [ $# -ge 3 ]; then
        curl -sS --fail-with-body -X "$1" --json "$3" "$url$2"
    else
        curl -sS --fail-with-body -X "$1" "$url$2"
    fi
}

say "job $job at $url"
say "Is the service up?"
api GET /healthz

say "Create the job: GreedyLR from lr 0.1, raising the lr after more than 2 improving steps."
say "PUT with our own id: sending it again (from another rank, or a restart) is harmless."
api PUT "/v1/jobs/$job" '{"lr": 0.1, "config": {"patience": 2}, "tags": {"example": "curl"}}'
api PUT "/v1/jobs/$job" '{"lr": 0.1, "config": {"patience": 2}}'

say "Report a loss per step; each answer is the learning rate to use next."
step=0
for loss in 2.30 2.10 1.95 1.90 1.85 1.88 1.91 1.93 1.96; do
    api POST "/v1/jobs/$job/reports" "{\"step\": $step, \"loss\": $loss}"
    step=$((step + 1))
done
say "Sending a report again (a retry) answers the same, marked replayed."
api POST "/v1/jobs/$job/reports" '{"step": 8, "loss": 1.96}'
say "A diverged step reports its loss as NaN (or null, Infinity, -Infinity)."
api POST "/v1/jobs/$job/reports" '{"step": 9, "loss": "NaN"}'

say "The job: its current lr, full config with defaults, counters."
api GET "/v1/jobs/$job"

say "The history as JSON, steps 2 to 5, then all of it as CSV."
api GET "/v1/jobs/$job/history?from_step=2&to_step=5"
curl -sS --fail-with-body "$url/v1/jobs/$job/history?format=csv"

say "The decision of one step (observers and ranks that do not report use this)."
api GET "/v1/jobs/$job/lr?step=3"

say "Restart from a checkpoint taken after step 6: the job forgets steps 7 to 9."
api POST "/v1/jobs/$job/rewind" '{"to_step": 6}'

say "The jobs tagged example:curl (follow next_page_token for more pages)."
api GET "/v1/jobs?tag=example:curl&page_size=10"

say "Finish the job: it keeps its history and takes no new reports."
api PATCH "/v1/jobs/$job" '{"status": "finished"}'
say "A report to a finished job is refused with a problem+json (409):"
curl -sS --json '{"step": 7, "loss": 1.9}' "$url/v1/jobs/$job/reports"

say "Delete the job and its history (204, no body)."
curl -sS --fail-with-body -o /dev/null -w '%{http_code}\n' -X DELETE "$url/v1/jobs/$job"
say "It is gone (404):"
curl -sS "$url/v1/jobs/$job"
