-- wrk script for the report benchmark: every request is the next step of one of
-- BENCH_JOBS jobs (bench-0000, bench-0001, ...). Each wrk thread reports to its own share
-- of the jobs, in turn, so that two requests for one job are never in flight at once
-- (a job's steps must arrive in order). Non-200 answers are counted and printed.
-- With BENCH_BATCH=N (N > 0), every request is instead one POST /v1/reports of the job's
-- next N steps, as a backfill sends them, and an answer holding a report's problem
-- counts as not 200.
local jobs = tonumber(os.getenv("BENCH_JOBS") or "1000")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "2")
local batch = tonumber(os.getenv("BENCH_BATCH") or "0")
local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function init(args)
   first_job = math.floor(jobs * thread_index / thread_count)
   last_job = math.floor(jobs * (thread_index + 1) / thread_count) - 1
   next_job = first_job
   steps = {}
   not_ok = 0
end

function request()
   local job = next_job
   next_job = next_job + 1
   if next_job > last_job then
      next_job = first_job
   end
   local step = steps[job] or 0
   local headers = {["Content-Type"] = "application/json"}
   if batch > 0 then
      steps[job] = step + batch
      local items = {}
      for s = step, step + batch - 1 do
         items[#items + 1] = string.format('{"job":"bench-%04d","step":%d,"loss":%.17g}', job,
                                           s, loss_at(s, job))
      end
      return wrk.format("POST", "/v1/reports", headers,
                        '{"reports":[' .. table.concat(items, ",") .. ']}')
   end
   steps[job] = step + 1
   local body = string.format('{"step":%d,"loss":%.17g}', step, loss_at(step, job))
   return wrk.format("POST", string.format("/v1/jobs/bench-%04d/reports", job), headers, body)
end

-- A falling loss with some wobble, so that the policy raises and lowers the lr.
function loss_at(step, job)
   return 2.0 / (1.0 + 0.01 * step) + 0.05 * math.sin(step * 0.7 + job)
end

function response(status, headers, body)
   if status ~= 200 or (batch > 0 and string.find(body, '"problem"', 1, true)) then
      not_ok = not_ok + 1
      if not_ok <= 3 then
         io.stderr:write("status " .. status .. ": " .. body .. "\n")
      end
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("not_ok")
   end
   local e = summary.errors
   io.write(string.format(
      'RESULT {"requests":%d,"seconds":%.6f,"p50_ms":%.4f,"p99_ms":%.4f,' ..
      '"not_ok":%d,"socket_errors":%d}\n',
      summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, bad,
      e.connect + e.read + e.write + e.timeout))
end
