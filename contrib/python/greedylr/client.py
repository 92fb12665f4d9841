"""A client of the greedylr service, with the standard library only.

One Client keeps one keep-alive HTTP connection to greedylrd and sends one request at a
time over it (a lock makes it safe to share between threads; give each thread its own
Client to send in parallel). Requests that failed to reach the service, or that it
answered 503 (stopping, out of memory) or 429 (too many waiting), are sent again after a
growing pause: every request the client sends is idempotent on the service (creating a
job with its id, reporting the same step and loss again, rewinding to the same step), so
a retry never counts twice.
"""

import http.client
import json
import math
import operator
import os
import secrets
import socket
import threading
import time
import urllib.parse

from . import errors

DEFAULT_URL = "http://127.0.0.1:8080"

# The longest pause between two attempts, in seconds, whatever the backoff or Retry-After.
MAX_PAUSE = 10.0
# How many answer bytes an error message quotes when the answer is not problem+json.
QUOTE_MAX = 200
# The aggregate_timeout_ms of a job of several ranks when the client has not seen the job.
DEFAULT_AGGREGATE_TIMEOUT_MS = 30000
# Jobs per page when listing.
LIST_PAGE_SIZE = 1000
# Points per page when reading a history.
HISTORY_PAGE_SIZE = 10000
# Most reports one report_batch() sends (the service's limit).
BATCH_MAX = 1000


def encode_loss(loss):
    """A loss as the service takes it: a number, or "NaN", "Infinity", "-Infinity" for a
    diverged step. Anything float() takes works (a one-element tensor, a numpy scalar)."""
    value = float(loss)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_loss(value):
    """A loss as the service shows it, as a Python float ("NaN" becomes float("nan"))."""
    if isinstance(value, str):
        return float(value)
    return value


def new_job_id(prefix):
    """A job id no run has used: prefix, the time (UTC) and a few random hex digits, e.g.
    "torch-mlp-20240501-120000-3fa9c2". A training that restarts gives its first id again."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def decode_lr(value):
    """A learning rate as the service shows it, as a Python float (or a list of them): the
    service writes each number in its shortest exact form, so a zero comes as JSON 0."""
    if isinstance(value, list):
        return [float(item) for item in value]
    return float(value)


def decode_lrs(record):
    """record (an answer, a job or a point) with its learning rates as floats; returns it."""
    if isinstance(record, dict):
        for key in ("lr", "initial_lr"):
            if record.get(key) is not None:
                record[key] = decode_lr(record[key])
    return record


def encode_lr(lr):
    """An initial learning rate: one number, or a list with one per parameter group."""
    if isinstance(lr, (list, tuple)):
        return [float(value) for value in lr]
    return float(lr)


def quote(job_id):
    """A job id as a path segment."""
    if not isinstance(job_id, str) or not job_id:
        raise TypeError(f"a job id is a non-empty string, not {job_id!r}")
    return urllib.parse.quote(job_id, safe="")


class Client:
    """A connection to greedylrd.

    url: where the service listens (a path prefix, for a service behind a proxy, is kept).
    timeout: seconds to wait for an answer (reports of a job of several ranks wait longer,
    see report()). retries: how many times a failed request is sent again. backoff: the
    first pause between attempts in seconds; each next one is twice as long. token: the
    API token sent as "Authorization: Bearer TOKEN" (default: the GREEDYLR_TOKEN
    environment variable; none when that is unset), for a service that requires tokens.
    """

    def __init__(self, url=DEFAULT_URL, timeout=10.0, retries=5, backoff=0.1, token=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http://HOST:PORT or https://HOST:PORT, not {url!r}")
        self.url = url
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._token = token if token is not None else os.environ.get("GREEDYLR_TOKEN") or None
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._connection = None
        self._lock = threading.Lock()
        # Seconds a report may wait for the other ranks, per job of several ranks seen.
        self._rank_waits = {}

    def __repr__(self):
        return f"greedylr.Client({self.url!r})"

    def close(self):
        """Closes the connection (the next request opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ---- the service's routes ----------------------------------------------------------

    def health(self):
        """GET /healthz: {"status": "ok"} when the service is up."""
        return self._call("GET", "/healthz")

    def create_job(self, job_id, lr, policy=None, config=None, tags=None, world_size=1,
                   aggregate=None, aggregate_timeout_ms=None, family=None, tune=False):
        """Creates a job and returns it (a dict, as GET /v1/jobs/{id} shows it).

        With a job_id the job is created with PUT: calling it again with the same policy,
        lr, config and ranks returns the job as it is now (so every rank of a distributed
        training may call it), and raises Conflict if the id is taken with other ones.
        job_id None lets the service choose the id (in the answer's "id").
        lr: a number, or a list with one per parameter group (the answers are lists then).
        config: the policy's settings (README, "Policies"). tags: a dict of strings.
        world_size: how many ranks report each step; aggregate ("mean", "max", "min",
        "rank0") and aggregate_timeout_ms say how their losses are combined and waited for.
        policy: by default "greedylr", or "auto" with tune. "learned" (with a family) runs
        the family's newest learned model (learn()), or auto while it has none (the job's
        "tuned" says which, and why).
        family: the family of runs the job belongs to (one training problem). tune: the
        service chooses the policy's settings and a factor of lr from the outcomes of the
        family's finished jobs (the job's "tuned" says what and why; its "lr" is the lr to
        use); a retry of the same request finds the same job.
        """
        body = {"lr": encode_lr(lr), "world_size": int(world_size)}
        if policy is not None:
            body["policy"] = policy
        if family is not None:
            body["family"] = family
        if tune:
            body["tune"] = True
        if config:
            body["config"] = dict(config)
        if tags:
            body["tags"] = dict(tags)
        if aggregate is not None:
            body["aggregate"] = aggregate
        if aggregate_timeout_ms is not None:
            body["aggregate_timeout_ms"] = int(aggregate_timeout_ms)
        if job_id is None:
            job = self._call("POST", "/v1/jobs", body=body, idempotent=False)
        else:
            job = self._call("PUT", f"/v1/jobs/{quote(job_id)}", body=body)
        return self._seen(job)

    def get_job(self, job_id):
        """The job: policy, lr, initial_lr, config, tags, status, last_step, state, ..."""
        return self._seen(self._call("GET", f"/v1/jobs/{quote(job_id)}"))

    def list_jobs(self, status=None, tag=None, page_size=LIST_PAGE_SIZE, family=None):
        """Iterates over every job, oldest first, fetching page after page.

        status: "running" or "finished". tag: "key:value" or a (key, value) pair. family:
        only the jobs of that family.
        """
        query = {"page_size": page_size}
        if family is not None:
            query["family"] = family
        if status is not None:
            query["status"] = status
        if tag is not None:
            query["tag"] = tag if isinstance(tag, str) else f"{tag[0]}:{tag[1]}"
        while True:
            page = self._call("GET", "/v1/jobs", query=query)
            for job in page["jobs"]:
                yield self._seen(job)
            if not page.get("next_page_token"):
                return
            query["page_token"] = page["next_page_token"]

    def report(self, job_id, step, loss, rank=0, timeout=None, lr_cap=None):
        """Reports the loss of a step and returns the answer: {"job", "step", "lr",
        "event"} and, when they apply, "replayed" (this was a retry), "ranks", "late".

        loss: a float (or anything float() takes); NaN and infinities are sent as such.
        None sends no loss, which only the schedules of the step number take (the service
        refuses a report without one for a policy that reads it).
        lr_cap: an upper bound on the answer that the trainer computed (a stable step size,
        say); only policy "auto" takes one.
        In a job of several ranks the answer comes once every rank reported the step (or
        the job's aggregate_timeout_ms passed): the client waits that long on top of its
        timeout (pass timeout to choose another wait, in seconds).
        """
        body = {"step": operator.index(step)}
        if loss is not None:
            body["loss"] = encode_loss(loss)
        if lr_cap is not None:
            body["lr_cap"] = float(lr_cap)
        if rank:
            body["rank"] = operator.index(rank)
        if timeout is None:
            timeout = self.timeout + self._rank_waits.get(job_id, 0.0)
            if rank and job_id not in self._rank_waits:
                timeout += DEFAULT_AGGREGATE_TIMEOUT_MS / 1000.0
        return decode_lrs(self._call("POST", f"/v1/jobs/{quote(job_id)}/reports", body=body,
                                     timeout=timeout))

    def report_batch(self, reports, timeout=None):
        """Reports many steps, of any jobs, in one request (POST /v1/reports) and returns
        one result per report, in order: the answer report() would give, or, for a report
        the service refused, {"job", "step", "problem"} (problem: the problem+json object
        report() would raise). Each report is as idempotent as a single one, so the batch
        is retried whole after a lost connection; the answer comes once every new decision
        is committed.

        reports: dicts {"job", "step", "loss"} with "rank" and "lr_cap" when they apply,
        at most BATCH_MAX of them (loss as report() takes it; None or absent: no loss).
        The client waits as report() does, for the longest wait of any report's ranks.
        """
        items = []
        for report in reports:
            item = {"job": report["job"], "step": operator.index(report["step"])}
            if report.get("loss") is not None:
                item["loss"] = encode_loss(report["loss"])
            for key, kind in (("rank", operator.index), ("lr_cap", float)):
                if report.get(key) is not None:
                    item[key] = kind(report[key])
            items.append(item)
        if not 1 <= len(items) <= BATCH_MAX:
            raise ValueError(f"a batch holds 1 to {BATCH_MAX} reports, not {len(items)}")
        if timeout is None:
            # As report() waits: the longest wait for the other ranks of any report's step.
            waits = [self._rank_waits.get(item["job"],
                                          DEFAULT_AGGREGATE_TIMEOUT_MS / 1000.0
                                          if item.get("rank") else 0.0) for item in items]
            timeout = self.timeout + max(waits)
        answer = self._call("POST", "/v1/reports", body={"reports": items}, timeout=timeout)
        return [result if "problem" in result else decode_lrs(result)
                for result in answer["results"]]

    def get_lr(self, job_id, step, wait_ms=0):
        """The decision of a step (the answer its report got), waiting up to wait_ms for it;
        None when it is not decided yet."""
        query = {"step": operator.index(step), "wait_ms": int(wait_ms)}
        return decode_lrs(self._call("GET", f"/v1/jobs/{quote(job_id)}/lr", query=query,
                                     timeout=self.timeout + wait_ms / 1000.0))

    def history(self, job_id, **query):
        """The steps a job was told.

        query: from_step, to_step, max_points, format, page_size, page_token (as the
        service takes them). As JSON (the default) this returns the list of points of the
        whole range, following every page (unless page_token is given: then that one page
        only); each point is {"step", "loss", "lr", "event"} (and "metric", "ranks" when
        they apply), with a diverged loss as float("nan") or an infinity. format="csv"
        returns the CSV text.
        """
        query = {name: value for name, value in query.items() if value is not None}
        path = f"/v1/jobs/{quote(job_id)}/history"
        if query.get("format") == "csv":
            return self._call("GET", path, query=query)
        one_page = "page_token" in query
        query.setdefault("page_size", HISTORY_PAGE_SIZE)
        points = []
        while True:
            page = self._call("GET", path, query=query)
            for point in page["points"]:
                decode_lrs(point)
                point["loss"] = decode_loss(point["loss"])
                if "metric" in point:
                    point["metric"] = decode_loss(point["metric"])
                points.append(point)
            if one_page or not page.get("next_page_token"):
                return points
            query["page_token"] = page["next_page_token"]

    def finish(self, job_id, outcome=None):
        """Marks the job finished (it keeps its history, takes no new reports); returns it.

        outcome: how well the run ended, lower is better (a test loss, say); by default its
        last loss. It may also be given later, to a finished job. Tuning learns from it.
        """
        body = {"status": "finished"}
        if outcome is not None:
            body["outcome"] = float(outcome)
        return self._seen(self._call("PATCH", f"/v1/jobs/{quote(job_id)}", body=body))

    def families(self, page_size=LIST_PAGE_SIZE):
        """Iterates over every family, by name: {"name", "jobs", "finished",
        "best_outcome", "updated_at"}."""
        query = {"page_size": page_size}
        while True:
            page = self._call("GET", "/v1/families", query=query)
            yield from page["families"]
            if not page.get("next_page_token"):
                return
            query["page_token"] = page["next_page_token"]

    def family(self, name, policy=None):
        """A family: its runs with their settings and outcomes, what tuning of policy
        ("auto" by default, or "greedylr") has learned from them ("tuning"), and its newest
        learned model ("model", None before learn())."""
        query = {"policy": policy} if policy is not None else None
        return self._call("GET", f"/v1/families/{quote(name)}", query=query)

    def learn(self, family):
        """Learns a new model of the family from its finished jobs' histories (an admin
        token's call) and returns its record: {"family", "version", "created_at",
        "trained_on", "fit", "model"}. Jobs created with policy="learned" in the family
        from then on run it; those running keep theirs. Raises InvalidValue when the family has
        too few finished jobs, NotFound when it has none."""
        return self._call("POST", f"/v1/families/{quote(family)}/learn", idempotent=False)

    def set_tags(self, job_id, tags):
        """Replaces the job's tags; returns the job."""
        return self._seen(self._call("PATCH", f"/v1/jobs/{quote(job_id)}",
                                     body={"tags": dict(tags)}))

    def delete(self, job_id):
        """Deletes the job and its history."""
        self._call("DELETE", f"/v1/jobs/{quote(job_id)}")
        self._rank_waits.pop(job_id, None)

    def rewind(self, job_id, to_step):
        """Puts the job back in its state right after to_step (-1: the initial state) and
        forgets the history after it, as when training restarts from a checkpoint taken
        then. Returns the job as it is after the rewind."""
        body = {"to_step": operator.index(to_step)}
        return self._seen(self._call("POST", f"/v1/jobs/{quote(job_id)}/rewind", body=body))

    # ---- sending -------------------------------------------------------------------------

    def _seen(self, job):
        """Remembers how long reports to a job of several ranks may wait; returns job, with
        its learning rates as floats."""
        decode_lrs(job)
        if isinstance(job, dict) and job.get("world_size", 1) > 1:
            wait = job.get("aggregate_timeout_ms", DEFAULT_AGGREGATE_TIMEOUT_MS) / 1000.0
            self._rank_waits[job["id"]] = wait
        return job

    def _call(self, method, path, query=None, body=None, idempotent=True, timeout=None):
        """Sends a request (again after failures, see the module's comment) and returns the
        answer's JSON (text for CSV, None for 204); raises an errors.Error."""
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            return self._send_with_retries(method, target, data, idempotent, timeout)

    def _send_with_retries(self, method, target, data, idempotent, timeout):
        failures = 0
        if not idempotent:
            self._drop()  # a fresh connection, so a failure means the service is unreachable
        while True:
            reused = self._connection is not None
            try:
                status, headers, payload = self._send(method, target, data, timeout)
            except (socket.timeout, TimeoutError) as error:
                self._drop()
                raise errors.Timeout(f"{method} {target}: no answer from {self.url} within "
                                     f"{timeout:g} s") from error
            except (OSError, http.client.HTTPException) as error:
                self._drop()
                # A kept-alive connection the service closed meanwhile fails at once: send
                # again on a new one right away. Otherwise the request may not be sent
                # again unless it surely never arrived (the connection was refused).
                if reused:
                    continue
                if not idempotent and not isinstance(error, ConnectionRefusedError):
                    raise errors.ConnectionFailed(
                        f"{method} {target}: {error} (not sent again: it is not idempotent)"
                    ) from error
                if failures >= self.retries:
                    raise errors.ConnectionFailed(
                        f"{method} {target}: cannot reach {self.url} after {failures + 1} "
                        f"attempts: {error}") from error
                self._pause(failures, None)
                failures += 1
                continue
            if status in (429, 503) and failures < self.retries:
                self._pause(failures, headers.get("retry-after"))
                failures += 1
                continue
            # A DELETE whose first attempt may have arrived before the connection failed.
            if method == "DELETE" and status == 404 and failures > 0:
                return None
            return self._answer(method, target, status, headers, payload)

    def _send(self, method, target, data, timeout):
        """One attempt: returns (status, headers with lower-case names, body bytes)."""
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=timeout)
        elif self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        self._connection.timeout = timeout
        headers = {"Accept": "application/json, application/problem+json, text/csv"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if data is not None:
            headers["Content-Type"] = "application/json"
        self._connection.request(method, target, body=data, headers=headers)
        response = self._connection.getresponse()
        payload = response.read()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self._drop()
        return response.status, answer_headers, payload

    def _drop(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _pause(self, failures, retry_after):
        """Sleeps before the next attempt: the backoff doubled per failure, or what the
        service asked for in Retry-After when that is longer."""
        pause = self.backoff * (2 ** failures)
        try:
            pause = max(pause, float(retry_after)) if retry_after else pause
        except ValueError:
            pass
        time.sleep(min(pause, MAX_PAUSE))

    def _answer(self, method, target, status, headers, payload):
        """The decoded body of a successful answer, or the error it stands for."""
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if 200 <= status < 300:
            if status == 204 or not payload:
                return None
            text = payload.decode("utf-8")
            return json.loads(text) if media.endswith("json") else text
        title, detail, kind = http.client.responses.get(status, "Error"), "", None
        if media == "application/problem+json":
            try:
                problem = json.loads(payload.decode("utf-8"))
                title = problem.get("title", title)
                detail = problem.get("detail", "")
                kind = problem.get("type")
            except ValueError:
                detail = payload[:QUOTE_MAX].decode("utf-8", "replace")
        else:
            detail = payload[:QUOTE_MAX].decode("utf-8", "replace")
        raise errors.from_status(status)(status, title, detail, kind, method, target)
