#!/usr/bin/python3
"""Keeps api/openapi.yaml true to what greedylrd serves.

Starts a daemon of its own (GLR_DAEMON, optionally under GLR_DAEMON_WRAPPER) on an
ephemeral port with a temporary database, then:

  * checks the document itself (OpenAPI 3.1, valid JSON Schemas, every $ref resolves,
    the examples match their schemas, every error is problem+json);
  * checks that the documented (path, method) pairs are exactly those the server serves:
    each one is routed, every other method answers 405 with an Allow header that lists
    exactly the documented methods, and paths that are not documented answer 404;
  * drives every route with requests that produce each documented status code, and
    validates every answer (status, content type, headers, body) against the schema the
    document gives for that route, status and content type; request bodies are checked
    against the documented request schema as well (accepted ones must match it, ones the
    server refuses as invalid must not).

Output is TAP; the exit status is 1 when a check failed. Run from the project top:
    GLR_DAEMON=build/src/greedylrd /usr/bin/python3 tests/test_openapi.py
"""

import csv
import http.client
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import warnings

import jsonschema
import yaml

from glrdaemon import SLOW, Daemon

# The methods whose routing is checked on every documented path.
METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE"]
# Largest request body the server accepts, in bytes.
BODY_MAX = 1024 * 1024
# Status codes this test can provoke; the document may also list server faults (5XX).
# The dashboard's files, as make builds them.
DASHBOARD = os.environ.get("GLR_DASHBOARD_DIR", "ui")
TESTABLE = {200, 201, 204, 400, 404, 405, 409, 413, 414, 415, 422}
# Errors that libmicrohttpd answers itself, before greedylrd sees the request, in HTML
# (414 also in problem+json, from greedylrd, for a query past its bounds).
LIBRARY_ERRORS = {"414", "431"}
# Most parameters a query may have (API_QUERY_PARAMS_MAX); one more is 414.
QUERY_PARAMS_MAX = 32
# Policies and a configuration for each, as a user would create them.
POLICY_CONFIGS = {
    "greedylr": {"patience": 1, "min_lr": 0.01, "max_lr": 1.0},
    "plateau": {"patience": 1, "factor": 0.5},
    "constant": {"warmup_steps": 2},
    "step": {"step_size": 2, "gamma": 0.5},
    "exponential": {"gamma": 0.9},
    "cosine": {"t_max": 5, "eta_min": 0.001},
    "linear": {"total_steps": 5, "start_factor": 1.0, "end_factor": 0.1},
    "multistep": {"milestones": [2, 4], "gamma": 0.5},
    "constant_factor": {"factor": 0.5, "total_iters": 3},
    "polynomial": {"total_iters": 6, "power": 2.0},
    "cosine_restarts": {"t_0": 2, "t_mult": 2, "eta_min": 0.001},
    "onecycle": {"total_steps": 10, "max_lr": 1.0, "three_phase": True},
    "sequence": {"schedules": [{"policy": "linear", "config": {"total_steps": 2}},
                               {"policy": "cosine", "config": {"t_max": 4, "periodic": True}}],
                 "milestones": [2]},
}


class Tap:
    """Prints TAP lines and remembers whether anything failed."""

    def __init__(self):
        self.count = 0
        self.failed = 0

    def check(self, passed, description, problems=()):
        """Prints one ok / not ok line; problems are printed as diagnostics on failure."""
        self.count += 1
        if passed:
            print(f"ok {self.count} - {description}")
        else:
            self.failed += 1
            print(f"not ok {self.count} - {description}")
            for problem in problems:
                for line in str(problem).splitlines():
                    print(f"#   {line}")
        sys.stdout.flush()
        return passed

    def finish(self):
        """Prints the plan and returns the exit status."""
        print(f"1..{self.count}")
        return 1 if self.failed else 0


class Response:
    """One HTTP answer: status, headers (lower-case names) and body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    def media_type(self):
        """The Content-Type without its parameters, or None."""
        value = self.headers.get("content-type")
        return value.split(";")[0].strip().lower() if value else None

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))


class Client:
    """Sends requests to the daemon, one connection per request."""

    def __init__(self, port):
        self.port = port
        self.token = None  # sent as "Authorization: Bearer" when set

    def connect(self):
        """Opens a new connection to the daemon."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, content_type="application/json"):
        """Sends a request. body: None, bytes, str, or anything JSON (which is encoded).
        content_type None sends no Content-Type header."""
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and content_type is not None:
            headers["Content-Type"] = content_type
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return Response(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()

    def request_declared_too_big(self, method, path):
        """Declares a body one byte over the limit and waits for the answer before
        sending it (Expect: 100-continue), as careful clients do."""
        connection = self.connect()
        try:
            connection.putrequest(method, path)
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(BODY_MAX + 1))
            connection.putheader("Expect", "100-continue")
            connection.endheaders()
            answer = connection.getresponse()
            return Response(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()

    def request_chunked_too_big(self, method, path):
        """Sends a JSON body one byte over the limit with chunked transfer encoding, so
        the server only learns its size while reading it."""
        text = b'{"pad": "' + b" " * (BODY_MAX - 10) + b'"}'
        assert len(text) == BODY_MAX + 1

        def chunks():
            for start in range(0, len(text), 65536):
                yield text[start:start + 65536]

        connection = self.connect()
        try:
            connection.request(method, path, body=chunks(), encode_chunked=True,
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            return Response(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()


class Spec:
    """The OpenAPI document, with helpers to find operations, responses and schemas."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as source:
            self.doc = yaml.safe_load(source)
        with warnings.catch_warnings():
            # Newer jsonschema deprecates RefResolver; Debian's 4.10 needs it.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resolver = jsonschema.RefResolver.from_schema(self.doc)

    def templates(self):
        """The documented path templates."""
        return list(self.doc.get("paths", {}))

    def methods(self, template):
        """The documented methods of a path template, upper case."""
        item = self.doc["paths"][template]
        return sorted(m.upper() for m in item if m.upper() in METHODS + ["HEAD"])

    def operations(self):
        """Every documented (template, method, operation)."""
        for template in self.templates():
            for method in self.methods(template):
                yield template, method, self.doc["paths"][template][method.lower()]

    def operation(self, template, method):
        """The operation object, or None when the pair is not documented."""
        item = self.doc["paths"].get(template, {})
        return item.get(method.lower())

    def deref(self, node):
        """Follows an OpenAPI-level $ref (responses, parameters, headers)."""
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
        return node

    def pointer(self, ref):
        """Resolves a local JSON pointer such as #/components/schemas/Job."""
        if not ref.startswith("#/"):
            raise KeyError(f"not a local reference: {ref}")
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def match(self, path):
        """The template a concrete path (no query) matches, or None."""
        for template in self.templates():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                return template
        return None

    def parameters(self, template, method):
        """The documented parameters of an operation (path-level ones included)."""
        item = self.doc["paths"][template]
        found = [self.deref(p) for p in item.get("parameters", [])]
        operation = self.operation(template, method) or {}
        found += [self.deref(p) for p in operation.get("parameters", [])]
        return found

    def query_names(self, template, method):
        """The names of the documented query parameters of an operation."""
        return {p["name"] for p in self.parameters(template, method) if p["in"] == "query"}

    def statuses(self, template, method):
        """The documented status keys of an operation ('200', '5XX', ...)."""
        return [str(key) for key in self.operation(template, method)["responses"]]

    def response(self, template, method, status):
        """The response object documented for this status, or None. A method the path
        does not take is answered 405, documented on every operation of the path."""
        operation = self.operation(template, method)
        if operation is None and method == "HEAD":
            operation = self.operation(template, "GET")
        if operation is None and status == 405:
            for other in self.methods(template):
                responses = self.operation(template, other)["responses"]
                if "405" in map(str, responses):
                    operation = self.operation(template, other)
                    break
        if operation is None:
            return None
        responses = {str(key): value for key, value in operation["responses"].items()}
        found = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        return self.deref(found) if found is not None else None

    def request_schema(self, template, method):
        """The JSON schema of an operation's request body, or None."""
        operation = self.operation(template, method) or {}
        body = self.deref(operation.get("requestBody"))
        if not body:
            return None
        media = body.get("content", {}).get("application/json")
        return media.get("schema") if media else None

    def errors(self, schema, instance):
        """The validation errors of instance against a schema of the document."""
        validator = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in validator.iter_errors(instance)]


class Checker:
    """Sends requests and checks each answer against the document, one TAP line each.
    Remembers which (template, method, status) were seen and which query parameters
    were used, for the coverage checks at the end."""

    def __init__(self, tap, spec, client):
        self.tap = tap
        self.spec = spec
        self.client = client
        self.seen = set()
        self.used_queries = set()

    def call(self, method, path, expect, what, body=None, content_type="application/json",
             body_valid=None):
        """Sends one request, checks the answer, prints one TAP line; returns the answer.
        body_valid says whether body must match the documented request schema (by
        default: when the server is expected to accept it or refuse it as invalid)."""
        response = self.client.request(method, path, body, content_type)
        problems = self.problems(method, path, response, expect)
        problems += self.body_problems(method, path, body, expect, body_valid)
        self.tap.check(not problems, f"{method} {shorten(path)} {what}: {expect}", problems)
        return response

    def call_quietly(self, method, path, expect, body=None):
        """Sends one request and returns (answer, problems) without printing."""
        response = self.client.request(method, path, body)
        problems = self.problems(method, path, response, expect)
        problems += self.body_problems(method, path, body, expect, None)
        return response, problems

    def record(self, method, path, expect, what, response):
        """Checks an answer obtained by other means (oversized bodies); one TAP line."""
        problems = self.problems(method, path, response, expect)
        self.tap.check(not problems, f"{method} {shorten(path)} {what}: {expect}", problems)
        return response

    def body_problems(self, method, path, body, expect, body_valid):
        """Compares a JSON request body with the documented request schema."""
        if body is None or isinstance(body, (bytes, str)):
            return []
        template = self.spec.match(urllib.parse.urlsplit(path).path)
        if template is None or self.spec.operation(template, method) is None:
            return []  # not routed, or a method the path does not take (405)
        schema = self.spec.request_schema(template, method)
        if schema is None:
            return [f"{method} {template} documents no JSON request body"]
        if body_valid is None:
            if 200 <= expect < 300:
                body_valid = True
            elif expect == 422:
                body_valid = False
            else:
                return []
        errors = self.spec.errors(schema, body)
        if body_valid and errors:
            return ["the request body does not match the documented request schema:"] + errors
        if not body_valid and not errors:
            return ["the server refuses this body, but the documented request schema allows it"]
        return []

    def problems(self, method, path, response, expect):
        """Everything wrong with an answer: its status, its content type, its headers,
        its body, and whatever the document does not say about it."""
        problems = []
        parts = urllib.parse.urlsplit(path)
        template = self.spec.match(parts.path)
        if template is None:
            return [f"{parts.path} matches no documented path"]
        if response.status != expect:
            problems.append(f"status {response.status}, expected {expect}")
            problems.append(response.body[:300].decode("utf-8", "replace"))
        operation_method = "GET" if method == "HEAD" else method
        # A query refused 414 is not read: its names need not be documented ones.
        names = [] if expect == 414 else urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        for name in names:
            self.used_queries.add((template, operation_method, name))
            if name not in self.spec.query_names(template, operation_method):
                problems.append(f"query parameter {name} is not documented")
        documented = self.spec.response(template, operation_method, response.status)
        if documented is None:
            return problems + [f"status {response.status} is not documented for "
                               f"{operation_method} {template}"]
        self.note_seen(template, operation_method, response.status)
        for name in documented.get("headers", {}):
            if name.lower() not in response.headers:
                problems.append(f"the documented header {name} is missing")
        content = documented.get("content")
        if not content:
            if response.body:
                problems.append("a body came where the document promises none")
            return problems
        media_type = response.media_type()
        if media_type not in content:
            return problems + [f"Content-Type {media_type} is not documented "
                               f"(documented: {', '.join(content)})"]
        if method == "HEAD":
            if response.body:
                problems.append("HEAD answered a body")
            return problems
        schema = content[media_type].get("schema")
        if schema is None:
            return problems + ["the document gives no schema for this answer"]
        if media_type.endswith("json"):
            try:
                instance = response.json()
            except ValueError as error:
                return problems + [f"the body is not JSON: {error}"]
        else:
            instance = response.body.decode("utf-8")
        errors = self.spec.errors(schema, instance)
        if errors:
            problems.append("the body does not match the documented schema:")
            problems += errors[:10]
        return problems

    def note_seen(self, template, method, status):
        """Records a documented status as produced. A 405 counts for every operation of
        the path, since each documents the answer to the methods the path does not take."""
        if status == 405:
            for other in self.spec.methods(template):
                self.seen.add((template, other, 405))
        else:
            self.seen.add((template, method, status))


def shorten(path):
    """A path short enough for a TAP line (long ids are abbreviated)."""
    return re.sub(r"([A-Za-z0-9._-]{40})[A-Za-z0-9._-]+", r"\1...", path)


# ---- the document alone ---------------------------------------------------------------


def check_document(tap, spec):
    """Checks the document without the server."""
    doc = spec.doc
    tap.check(doc.get("openapi") == "3.1.0", "the document is OpenAPI 3.1.0")
    schemas = doc.get("components", {}).get("schemas", {})
    wanted = ["Job", "JobCreate", "JobPatch", "JobList", "Report", "ReportAnswer", "History",
              "Point", "Problem", "Health"]
    missing = [name for name in wanted if name not in schemas]
    tap.check(not missing, "components/schemas has Job, JobCreate, JobPatch, JobList, Report, "
              "ReportAnswer, History, Point, Problem and Health", [f"missing: {missing}"])
    invalid = []
    for name, schema in schemas.items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            invalid.append(f"{name}: {error.message}")
    tap.check(not invalid, f"all {len(schemas)} component schemas are valid JSON Schema 2020-12",
              invalid)
    unresolved = []
    for ref in find_refs(doc):
        try:
            spec.pointer(ref)
        except (KeyError, TypeError) as error:
            unresolved.append(f"{ref}: {error}")
    tap.check(not unresolved, "every $ref resolves", unresolved)
    check_examples(tap, spec)
    check_error_answers(tap, spec)
    check_path_parameters(tap, spec)


def find_refs(node):
    """Every $ref value in a tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from find_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from find_refs(value)


def check_examples(tap, spec):
    """Every example of a request or response body matches its schema."""
    problems = []
    count = 0
    for template, method, operation in spec.operations():
        media_types = []
        body = spec.deref(operation.get("requestBody"))
        if body:
            media_types += [(f"{method} {template} request", body.get("content", {}))]
        for status, response in operation["responses"].items():
            response = spec.deref(response)
            media_types += [(f"{method} {template} {status}", response.get("content", {}))]
        for where, content in media_types:
            for media_type, media in content.items():
                if "example" in media and "schema" in media:
                    count += 1
                    errors = spec.errors(media["schema"], media["example"])
                    problems += [f"{where} {media_type}: {e}" for e in errors]
    tap.check(count > 0 and not problems, f"the {count} examples match their schemas", problems)


def check_error_answers(tap, spec):
    """Every documented error answer is application/problem+json with the Problem schema."""
    problems = []
    for template, method, operation in spec.operations():
        for status, response in operation["responses"].items():
            if not str(status).startswith(("4", "5")) or str(status) in LIBRARY_ERRORS:
                continue
            content = spec.deref(response).get("content", {})
            where = f"{method} {template} {status}"
            if list(content) != ["application/problem+json"]:
                problems.append(f"{where}: content is {list(content)}")
            elif "#/components/schemas/Problem" not in list(find_refs(content)):
                problems.append(f"{where}: the schema does not use Problem")
    tap.check(not problems, "every documented error is application/problem+json with the "
              "Problem schema", problems)


def check_path_parameters(tap, spec):
    """Every {name} in a path template is a documented required path parameter."""
    problems = []
    for template, method, _ in spec.operations():
        declared = {p["name"] for p in spec.parameters(template, method)
                    if p["in"] == "path" and p.get("required")}
        for name in re.findall(r"\{([^}]+)\}", template):
            if name not in declared:
                problems.append(f"{method} {template}: {{{name}}} is not declared")
    tap.check(not problems, "every path template parameter is declared", problems)


# ---- routing ---------------------------------------------------------------------------


def sample_path(template, job_id):
    """A concrete path for a template."""
    return template.replace("{id}", job_id).replace("{name}", job_id)


def check_routes(tap, spec, checker, client):
    """The documented (path, method) pairs are exactly those the server serves."""
    for template, method, _ in spec.operations():
        # An id that does not exist and an empty object: routed requests answer 404
        # not-found or 422, never 405 or 404 no-route, and change nothing.
        path = sample_path(template, "no-such-job")
        body = {} if method in ("POST", "PUT", "PATCH") else None
        response = client.request(method, path, body)
        no_route = response.status == 404 and b"no-route" in response.body
        tap.check(response.status != 405 and not no_route,
                  f"{method} {template} is served (answers {response.status})",
                  [response.body[:200].decode("utf-8", "replace")])
    for template in spec.templates():
        documented = set(spec.methods(template))
        allowed = documented | ({"HEAD"} if "GET" in documented else set())
        for method in METHODS:
            if method in documented:
                continue
            path = sample_path(template, "no-such-job")
            body = {} if method in ("POST", "PUT", "PATCH") else None
            response = checker.call(method, path, 405, "is not a documented method", body)
            given = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
            tap.check(given == allowed,
                      f"{method} {template}: Allow lists exactly {', '.join(sorted(allowed))}",
                      [f"Allow: {response.headers.get('allow')}"])
        if "GET" in documented:
            path = sample_path(template, "no-such-job")
            get = client.request("GET", path)
            head = client.request("HEAD", path)
            tap.check(head.status == get.status and not head.body,
                      f"HEAD {template} answers like GET ({get.status}), without a body",
                      [f"HEAD answered {head.status} with {len(head.body)} bytes"])
    for template, method, _ in spec.operations():
        # Any route: a query past the bound is 414, before anything else is read. An id
        # that is a dot segment is no id, on every route that takes one.
        query = "&".join(f"p{i}=1" for i in range(QUERY_PARAMS_MAX + 1))
        path = sample_path(template, "no-such-job") + "?" + query
        checker.call(method, path, 414, "with a query of too many parameters")
        if "{" in template:
            checker.call(method, sample_path(template, ".."), 400, "with the id ..")
    problem = spec.doc["components"]["schemas"]["Problem"]
    for path in ["/v1", "/v1/job", "/ui", "/ui/a/b", "/v1/openapi.json", "/index.html", "/healthz/x", "/v1/jobs/x/y", "/v1/jobs/x/reports/1",
                 "/v1/jobs/x/history/y", "/v2/jobs"]:
        response = client.request("GET", path)
        problems = []
        if response.status != 404 or response.media_type() != "application/problem+json":
            problems.append(f"{response.status} {response.media_type()}")
        else:
            problems += spec.errors(problem, response.json())
            if response.json().get("type") != "urn:greedylr:problem:no-route":
                problems.append(f"type {response.json().get('type')}")
        tap.check(not problems, f"GET {path} (not documented) answers 404 no-route", problems)


# ---- driving every route ---------------------------------------------------------------


def check_health(checker):
    """GET /healthz, /readyz and /metrics."""
    checker.call("GET", "/healthz", 200, "says the daemon is up")
    checker.call("GET", "/readyz", 200, "says the daemon can take reports")
    checker.call("GET", "/metrics", 200, "answers the Prometheus text format")


def check_dashboard(checker, workdir):
    """The dashboard's files and the API description; a daemon without them answers 404."""
    checker.call("GET", "/", 200, "answers the dashboard's page")
    checker.call("GET", "/ui/app.js", 200, "answers the dashboard's script")
    checker.call("GET", "/ui/style.css", 200, "answers the dashboard's style sheet")
    checker.call("GET", "/ui/no-such-file.js", 404, "of a file the dashboard has not")
    checker.call("GET", "/v1/openapi.yaml", 200, "answers this document")
    empty = os.path.join(workdir, "bare", "empty")
    os.makedirs(empty)
    bare = Daemon(os.path.join(workdir, "bare"), extra_args=["--dashboard-dir", empty])
    try:
        other = Checker(checker.tap, checker.spec, Client(bare.port))
        other.call("GET", "/", 404, "of a daemon whose dashboard directory is empty")
        other.call("GET", "/v1/openapi.yaml", 404, "of a daemon without the document")
        checker.seen |= other.seen
    finally:
        checker.tap.check(bare.stop() == 0, "the daemon without a dashboard stops cleanly")


def check_no_body(checker, spec):
    """A body sent to an operation that takes none is 413, answered before it is read."""
    for template, method, _ in spec.operations():
        if method == "HEAD" or spec.request_schema(template, method) is not None:
            continue
        path = re.sub(r"\{[^}]+\}", "no-such-thing", template)
        checker.call(method, path, 413, "with a body it takes none of", "{}")


def check_body_errors(checker, client, method, path):
    """The errors every route with a JSON body shares: 400, 415 and 413."""
    checker.call(method, path, 400, "with a body that is not JSON", "{\"lr\": ")
    checker.call(method, path, 400, "with an empty body", "")
    checker.call(method, path, 400, "with trailing garbage after the JSON", "{} x")
    checker.call(method, path, 415, "with Content-Type text/plain", "{}", content_type="text/plain")
    checker.record(method, path, 413, "declaring a body over 1 MiB",
                   client.request_declared_too_big(method, path))
    checker.record(method, path, 413, "with a chunked body over 1 MiB",
                   client.request_chunked_too_big(method, path))


def check_create(checker, client):
    """POST /v1/jobs and PUT /v1/jobs/{id}; returns the ids of the jobs made."""
    tap = checker.tap
    jobs = {}
    response = checker.call("POST", "/v1/jobs", 201, "creates a job",
                            {"lr": 0.1, "tags": {"team": "vision", "run": "a"}})
    job = response.json() if response.status == 201 else {}
    location = response.headers.get("location")
    tap.check(job.get("id", "").startswith("job-") and location == f"/v1/jobs/{job.get('id')}",
              "POST /v1/jobs: Location names the new job", [f"Location: {location}"])
    jobs["posted"] = job.get("id", "missing")
    checker.call("GET", location or "/v1/jobs/missing", 200, "(the Location) is the job")
    checker.call("POST", "/v1/jobs", 201, "without Content-Type creates a job", {"lr": 0.2},
                 content_type=None)
    checker.call("POST", "/v1/jobs", 201, "with Content-Type application/json; charset=utf-8",
                 {"lr": 0.2}, content_type="application/json; charset=utf-8")
    exact = b'{"lr": 0.3}' + b" " * (BODY_MAX - 11)
    checker.call("POST", "/v1/jobs", 201, "with a body of exactly 1 MiB", exact)
    check_body_errors(checker, client, "POST", "/v1/jobs")
    for what, body in [("with lr 0", {"lr": 0}),
                       ("without lr", {"policy": "greedylr"}),
                       ("with an unknown policy", {"lr": 0.1, "policy": "adam"}),
                       ("with an unknown config key", {"lr": 0.1, "config": {"patince": 3}}),
                       ("with an unknown field", {"lr": 0.1, "id": "mine"}),
                       ("with a tag that is not a string", {"lr": 0.1, "tags": {"a": 1}}),
                       ("with a body that is an array", [{"lr": 0.1}]),
                       ("with step but no step_size", {"lr": 0.1, "policy": "step"})]:
        checker.call("POST", "/v1/jobs", 422, what, body)
    checker.call("POST", "/v1/jobs", 422, "with min_lr above lr",
                 {"lr": 0.1, "config": {"min_lr": 0.5}}, body_valid=True)

    for policy, config in POLICY_CONFIGS.items():
        job_id = f"p-{policy}"
        body = {"policy": policy, "lr": 0.1, "config": config, "tags": {"policy": policy}}
        checker.call("PUT", f"/v1/jobs/{job_id}", 201, f"creates a {policy} job", body)
        jobs[policy] = job_id
    body = {"lr": [0.1, 0.2], "config": {"min_lr": [0.01, 0.02], "patience": 1}}
    checker.call("PUT", "/v1/jobs/groups", 201, "creates a job of two parameter groups", body)
    jobs["groups"] = "groups"
    body = {"lr": 0.1, "config": {"smooth": True, "window_size": 3, "patience": 1}}
    checker.call("PUT", "/v1/jobs/smooth", 201, "creates a smoothing job", body)
    jobs["smooth"] = "smooth"
    body = {"policy": "plateau", "lr": [0.1], "config": {"min_lr": [0.0]}}
    checker.call("PUT", "/v1/jobs/plateau-array", 201, "creates a job with a one-element lr array",
                 body)
    jobs["plateau-array"] = "plateau-array"

    path = "/v1/jobs/p-greedylr"
    body = {"policy": "greedylr", "lr": 0.1, "config": POLICY_CONFIGS["greedylr"],
            "tags": {"policy": "greedylr"}}
    response = checker.call("PUT", path, 200, "again with the same request", body)
    tap.check("location" not in response.headers, "PUT again: no Location (nothing was created)")
    checker.call("PUT", path, 409, "with another config", dict(body, config={"patience": 5}),
                 body_valid=True)
    check_body_errors(checker, client, "PUT", path)
    checker.call("PUT", "/v1/jobs/bad!id", 422, "with an id that has '!'", {"lr": 0.1},
                 body_valid=True)
    checker.call("PUT", "/v1/jobs/" + "a" * 129, 422, "with an id of 129 characters", {"lr": 0.1},
                 body_valid=True)
    checker.call("PUT", "/v1/jobs/" + "a" * 1025, 404, "with a path segment of 1025 characters",
                 {"lr": 0.1}, body_valid=True)
    checker.call("PUT", "/v1/jobs/" + "a" * 128, 201, "with an id of 128 characters", {"lr": 0.1})
    checker.call("PUT", "/v1/jobs/bad-config", 422, "with a config that is not an object",
                 {"lr": 0.1, "config": 3})
    checker.call("PUT", "/v1/jobs/bad-lr", 422, "with 65 parameter groups",
                 {"lr": [0.1] * 65})
    return jobs


def check_get_and_list(checker, jobs):
    """GET /v1/jobs/{id} and GET /v1/jobs."""
    tap = checker.tap
    for name, job_id in jobs.items():
        checker.call("GET", f"/v1/jobs/{job_id}", 200, f"is the {name} job")
    checker.call("GET", "/v1/jobs/no-such-job", 404, "is unknown")
    checker.call("GET", "/v1/jobs/bad!id", 404, "(an id that cannot exist) is unknown")

    response = checker.call("GET", "/v1/jobs", 200, "lists jobs")
    listed = []
    if response.status == 200:
        listed = [job["id"] for job in response.json()["jobs"]]
    tap.check(jobs["posted"] in listed and "p-cosine" in listed, "GET /v1/jobs lists the jobs made")
    first = checker.call("GET", "/v1/jobs?page_size=2", 200, "lists one page of 2")
    token = first.json().get("next_page_token") if first.status == 200 else None
    tap.check(isinstance(token, str) and len(first.json()["jobs"]) == 2,
              "GET /v1/jobs?page_size=2 gives 2 jobs and a next_page_token")
    query = "page_size=2&page_token=" + urllib.parse.quote(token or "")
    second = checker.call("GET", f"/v1/jobs?{query}", 200, "follows the page token")
    if second.status == 200 and first.status == 200:
        ids = [job["id"] for job in first.json()["jobs"] + second.json()["jobs"]]
        tap.check(ids == listed[:4], "GET /v1/jobs: the second page continues the first")
    response = checker.call("GET", "/v1/jobs?tag=policy:cosine", 200, "filters by tag")
    if response.status == 200:
        ids = [job["id"] for job in response.json()["jobs"]]
        tap.check(ids == ["p-cosine"], "GET /v1/jobs?tag=policy:cosine finds only p-cosine",
                  [f"found {ids}"])
    checker.call("GET", "/v1/jobs?status=running&page_size=1000", 200, "filters running jobs")
    checker.call("GET", "/v1/jobs?status=finished", 200, "filters finished jobs")
    for what, query in [("page_size 0", "page_size=0"), ("page_size 1001", "page_size=1001"),
                        ("page_size x", "page_size=x"), ("an unknown status", "status=paused"),
                        ("a tag without ':'", "tag=policy"), ("a tag with no key", "tag=:x"),
                        ("a page token it never gave", "page_token=bogus")]:
        checker.call("GET", f"/v1/jobs?{query}", 422, f"with {what}")


def check_patch_and_delete(checker, client, jobs):
    """PATCH and DELETE /v1/jobs/{id}."""
    tap = checker.tap
    path = f"/v1/jobs/{jobs['posted']}"
    response = checker.call("PATCH", path, 200, "replaces the tags", {"tags": {"team": "audio"}})
    if response.status == 200:
        tap.check(response.json()["tags"] == {"team": "audio"}, "PATCH: the tags are replaced")
    check_body_errors(checker, client, "PATCH", path)
    for what, body in [("with nothing to change", {}),
                       ("setting status running", {"status": "running"}),
                       ("with an unknown field", {"color": "red"}),
                       ("with tags that are not an object", {"tags": ["a"]}),
                       ("with a tag key that has ':'", {"tags": {"a:b": "c"}})]:
        checker.call("PATCH", path, 422, what, body)
    checker.call("PATCH", "/v1/jobs/no-such-job", 404, "of an unknown job", {"status": "finished"})
    response = checker.call("PATCH", path, 200, "finishes the job", {"status": "finished"})
    if response.status == 200:
        tap.check(response.json()["status"] == "finished", "PATCH: the job is finished")
    checker.call("PATCH", path, 200, "finishes it again", {"status": "finished", "tags": {}})

    checker.call("PUT", "/v1/jobs/doomed", 201, "creates a job to delete", {"lr": 0.1})
    checker.call("DELETE", "/v1/jobs/doomed", 204, "deletes the job")
    checker.call("GET", "/v1/jobs/doomed", 404, "after the delete")
    checker.call("DELETE", "/v1/jobs/doomed", 404, "again")


def report_many(checker, job_id, losses, rank=None, first_step=0):
    """Reports losses as steps first_step, first_step + 1, ...; one TAP line for all.
    Returns the answers."""
    answers = []
    problems = []
    for step, loss in enumerate(losses, start=first_step):
        body = {"step": step, "loss": loss}
        if rank is not None:
            body["rank"] = rank
        response, found = checker.call_quietly("POST", f"/v1/jobs/{job_id}/reports", 200, body)
        problems += [f"step {step}: {p}" for p in found]
        if response.status == 200:
            answers.append(response.json())
    checker.tap.check(not problems, f"POST /v1/jobs/{job_id}/reports: {len(losses)} reports "
                      "answered 200 as documented", problems)
    return answers


def check_reports(checker, client, jobs):
    """POST /v1/jobs/{id}/reports."""
    tap = checker.tap
    losses = [2.0, 1.9, 1.8, 1.7, 1.75, 1.76, 1.77, 1.5, 1.4, 1.3]
    events = set()
    for name in list(POLICY_CONFIGS) + ["groups", "smooth", "plateau-array"]:
        answers = report_many(checker, jobs[name], losses)
        events |= {answer["event"] for answer in answers}
    tap.check({"increase", "decrease", "hold", "warmup"} <= events,
              "the reports produced increase, decrease, hold and warmup events",
              [f"events: {sorted(events)}"])
    for name in list(POLICY_CONFIGS) + ["groups", "smooth"]:
        checker.call("GET", f"/v1/jobs/{jobs[name]}", 200, "after 10 reports")
    checker.call("GET", "/v1/jobs?page_size=1000", 200, "lists the jobs after reports")

    path = f"/v1/jobs/{jobs['greedylr']}/reports"
    step = len(losses)
    for loss in [None, "NaN", "Infinity", "-Infinity"]:
        checker.call("POST", path, 200, f"with loss {json.dumps(loss)}",
                     {"step": step, "loss": loss})
        step += 1
    checker.call("POST", path, 422, "with rank 3 in a job of one rank",
                 {"step": step, "loss": 1.0, "rank": 3}, body_valid=True)
    checker.call("POST", path, 200, "with rank 0", {"step": step, "loss": 1.0, "rank": 0})
    response = checker.call("POST", path, 200, "again (a retry)",
                            {"step": step, "loss": 1.0, "rank": 0})
    if response.status == 200:
        tap.check(response.json().get("replayed") is True, "a retried report says replayed: true")
    checker.call("POST", path, 409, "again with another loss",
                 {"step": step, "loss": 0.5, "rank": 0})
    checker.call("POST", f"{path}?format=text", 200, "answered as text",
                 {"step": step + 1, "loss": 1.0})
    checker.call("POST", f"{path}?format=xml", 422, "in a format there is none of",
                 {"step": step + 2, "loss": 1.0}, body_valid=True)
    step += 1
    checker.call("POST", path, 200, "skipping steps", {"step": step + 5, "loss": 1.0})
    checker.call("POST", path, 409, "of a skipped step", {"step": step + 2, "loss": 1.0})
    check_body_errors(checker, client, "POST", path)
    for what, body in [("with step -1", {"step": -1, "loss": 1.0}),
                       ("with step 1.5", {"step": 1.5, "loss": 1.0}),
                       ("with step 10^15 + 1", {"step": 10**15 + 1, "loss": 1.0}),
                       ("without step", {"loss": 1.0}),
                       ("with loss \"abc\"", {"step": 100, "loss": "abc"}),
                       ("with loss true", {"step": 100, "loss": True}),
                       ("with rank 4096", {"step": 100, "loss": 1.0, "rank": 4096}),
                       ("with an unknown field", {"step": 100, "loss": 1.0, "epoch": 1})]:
        checker.call("POST", path, 422, what, body)
    # The schema allows a report without a loss (time-based jobs take one); greedylr reads it.
    checker.call("POST", path, 422, "without loss, which greedylr reads", {"step": 100},
                 body_valid=True)
    checker.call("POST", "/v1/jobs/no-such-job/reports", 404, "to an unknown job",
                 {"step": 0, "loss": 1.0})
    finished = f"/v1/jobs/{jobs['posted']}/reports"
    checker.call("POST", finished, 409, "to a finished job", {"step": 0, "loss": 1.0})
    checker.call("GET", f"/v1/jobs/{jobs['posted']}/lr?step=0&wait_ms=60000", 409,
                 "of a step a finished job will not decide, at once")


def check_rewind(checker, client, jobs):
    """POST /v1/jobs/{id}/rewind: back to a step, then the same losses give the same answers."""
    tap = checker.tap
    job_id = jobs["smooth"]
    path = f"/v1/jobs/{job_id}/rewind"
    history = checker.call("GET", f"/v1/jobs/{job_id}/history", 200, "before a rewind")
    before = history.json()["points"] if history.status == 200 else []
    response = checker.call("POST", path, 200, "to step 4", {"to_step": 4})
    if response.status == 200:
        job = response.json()
        tap.check(job["last_step"] == 4 and job["rewinds"] == 1,
                  "a rewound job shows its last step and one rewind", [json.dumps(job)])
    again = [point for point in before if point["step"] > 4]
    answers = report_many(checker, job_id, [point["loss"] for point in again], first_step=5)
    tap.check([a["lr"] for a in answers] == [p["lr"] for p in again],
              "the same losses after a rewind give the same learning rates")
    checker.call("POST", path, 200, "to the initial state", {"to_step": -1})
    checker.call("POST", path, 200, "to the last step (nothing to undo)", {"to_step": -1})
    checker.call("POST", path, 409, "past the last step (nothing to go back to)",
                 {"to_step": 10**6})
    check_body_errors(checker, client, "POST", path)
    for what, body in [("with to_step -2", {"to_step": -2}),
                       ("with to_step 1.5", {"to_step": 1.5}),
                       ("without to_step", {}),
                       ("with an unknown field", {"to_step": 1, "force": True})]:
        checker.call("POST", path, 422, what, body)
    checker.call("POST", "/v1/jobs/no-such-job/rewind", 404, "of an unknown job", {"to_step": 0})


def in_threads(calls):
    """Runs each (function, args) on its own thread at once; returns their results."""
    results = [None] * len(calls)

    def run(index, function, args):
        results[index] = function(*args)

    threads = [threading.Thread(target=run, args=(i, f, a)) for i, (f, a) in enumerate(calls)]
    for thread in threads:
        thread.start()
        time.sleep(0.005 * SLOW)  # in order, so the ones meant to wait are waiting first
    for thread in threads:
        thread.join()
    return results


def check_ranks(checker, client):
    """Jobs of several ranks: one decision per step, lookups of it, late ranks, limits."""
    tap = checker.tap
    body = {"lr": 0.1, "world_size": 2, "aggregate": "mean", "aggregate_timeout_ms": 20000}
    checker.call("PUT", "/v1/jobs/ranks", 201, "creates a job of two ranks", body)
    reports = "/v1/jobs/ranks/reports"
    first, second = in_threads([
        (client.request, ("POST", reports, {"step": 0, "loss": 1.0, "rank": 0})),
        (client.request, ("POST", reports, {"step": 0, "loss": 3.0, "rank": 1}))])
    checker.record("POST", reports, 200, "by rank 0, answered once rank 1 reported", first)
    checker.record("POST", reports, 200, "by rank 1, the last rank of the step", second)
    if first.status == 200 and second.status == 200:
        tap.check(first.json()["lr"] == second.json()["lr"] and first.json()["ranks"] == 2,
                  "both ranks get the same decision, made on 2 ranks",
                  [first.body.decode(), second.body.decode()])
    lookup = "/v1/jobs/ranks/lr"
    checker.call("GET", f"{lookup}?step=0", 200, "of a decided step")
    checker.call("GET", f"{lookup}?step=0&format=text", 200, "of a decided step, as text")
    checker.call("GET", f"{lookup}?step=1", 204, "of a step not decided, without waiting")
    checker.call("GET", f"{lookup}?step=1&wait_ms=50", 204, "of a step not decided in 50 ms")
    checker.call("GET", lookup, 422, "without a step")
    checker.call("GET", f"{lookup}?step=1&wait_ms=60001", 422, "waiting too long")
    checker.call("GET", "/v1/jobs/no-such-job/lr?step=0", 404, "of an unknown job")
    checker.call("POST", reports, 422, "with rank 2 of 2", {"step": 1, "loss": 1.0, "rank": 2},
                 body_valid=True)
    # 2 per rank + 16 may wait on one job: fill them with lookups, then one more is refused.
    results = []
    waiting = [threading.Thread(target=lambda: results.append(
        client.request("GET", f"{lookup}?step=1&wait_ms={2000 * SLOW}"))) for _ in range(20)]
    for thread in waiting:
        thread.start()
    time.sleep(0.5 * SLOW)  # until all 20 wait
    checker.call("GET", f"{lookup}?step=1&wait_ms=3000", 429, "beyond the waiting limit")
    checker.call("POST", reports, 429, "beyond the waiting limit",
                 {"step": 1, "loss": 1.0, "rank": 0})
    for thread in waiting:
        thread.join()
    tap.check(len(results) == 20 and all(a.status == 204 for a in results),
              "the lookups within the limit wait, then answer 204",
              [str(sorted({a.status for a in results}))])
    # A rank that misses the timeout: the step is decided without it; it is then late.
    body = {"lr": 0.1, "world_size": 2, "aggregate_timeout_ms": 100}
    checker.call("PUT", "/v1/jobs/ranks-late", 201, "creates a job with a 100 ms timeout", body)
    late = "/v1/jobs/ranks-late/reports"
    alone = checker.call("POST", late, 200, "by rank 0 alone, decided at the timeout",
                         {"step": 0, "loss": 2.0, "rank": 0})
    after = checker.call("POST", late, 200, "by rank 1 after the decision",
                         {"step": 0, "loss": 5.0, "rank": 1})
    if alone.status == 200 and after.status == 200:
        tap.check("ranks" not in alone.json() and after.json().get("late") is True
                  and after.json()["lr"] == alone.json()["lr"],
                  "the late rank gets the decision made without it, marked late",
                  [alone.body.decode(), after.body.decode()])
    # Each rank's own loss, as the dashboard draws it.
    losses = "/v1/jobs/ranks/ranks"
    page = checker.call("GET", losses, 200, "of a job of two ranks")
    if page.status == 200:
        tap.check([(p["step"], p["rank"], p["loss"]) for p in page.json()["points"]]
                  == [(0, 0, 1.0), (0, 1, 3.0)], "each rank's loss of step 0",
                  [page.body.decode()])
    first = checker.call("GET", f"{losses}?from_step=0&to_step=5&page_size=1", 200,
                         "one at a time")
    if first.status == 200 and first.json()["next_page_token"]:
        token = urllib.parse.quote(first.json()["next_page_token"])
        rest = checker.call("GET", f"{losses}?page_size=1&page_token={token}", 200, "page 2")
        tap.check(rest.status == 200 and rest.json()["points"][0]["rank"] == 1,
                  "the second page holds rank 1", [rest.body.decode()])
    late_page = checker.call("GET", "/v1/jobs/ranks-late/ranks", 200, "with a late rank")
    if late_page.status == 200:
        tap.check(late_page.json()["points"][-1].get("late") is True, "the late rank is marked",
                  [late_page.body.decode()])
    checker.call("GET", f"{losses}?page_size=0", 422, "with page_size 0")
    checker.call("GET", "/v1/jobs/no-such-job/ranks", 404, "of an unknown job")


def check_csv(checker, job_id, groups):
    """GET history as CSV: the documented header and one row per JSON point."""
    tap = checker.tap
    path = f"/v1/jobs/{job_id}/history"
    response = checker.call("GET", path + "?format=csv", 200, "as CSV")
    if response.status != 200:
        return
    text = response.body.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    lrs = ["lr"] if groups == 1 else [f"lr_{g}" for g in range(groups)]
    header = ["step", "loss"] + lrs + ["event"]
    tap.check(rows and rows[0] == header, f"GET {path}?format=csv: the header is "
              f"{','.join(header)}", [f"header: {rows[0] if rows else None}"])
    history = checker.client.request("GET", path + "?page_size=10000").json()
    steps = [int(row[0]) for row in rows[1:] if row and row[0].isdigit()]
    tap.check(steps == [point["step"] for point in history["points"]]
              and all(len(row) == len(header) for row in rows[1:]),
              f"GET {path}?format=csv: one row of {len(header)} fields per step")


def check_history(checker, jobs):
    """GET /v1/jobs/{id}/history, as JSON and as CSV."""
    tap = checker.tap
    path = f"/v1/jobs/{jobs['greedylr']}/history"
    response = checker.call("GET", path, 200, "as JSON")
    points = response.json()["points"] if response.status == 200 else []
    losses = [point["loss"] for point in points]
    shown = {"NaN", "Infinity", "-Infinity"} <= set(losses)
    tap.check(shown, "the history shows non-finite losses as strings")
    first = checker.call("GET", path + "?page_size=3", 200, "one page of 3")
    token = first.json().get("next_page_token") if first.status == 200 else None
    tap.check(isinstance(token, str), "history?page_size=3 gives a next_page_token")
    checker.call("GET", f"{path}?page_size=3&page_token={urllib.parse.quote(token or '')}", 200,
                 "follows the page token")
    checker.call("GET", path + "?from_step=2&to_step=5&format=json", 200, "of steps 2 to 5")
    response = checker.call("GET", path + "?max_points=4", 200, "downsampled to 4 points")
    if response.status == 200:
        tap.check(len(response.json()["points"]) <= 4, "history?max_points=4 has at most 4 points")
    response = checker.call("GET", f"/v1/jobs/{jobs['smooth']}/history", 200, "of a smoothing job")
    if response.status == 200:
        tap.check(any("metric" in p for p in response.json()["points"]),
                  "the history of a smoothing job shows the metric judged")
    for name in POLICY_CONFIGS:
        checker.call("GET", f"/v1/jobs/{jobs[name]}/history", 200, f"of the {name} job")
    checker.call("GET", f"/v1/jobs/{jobs['groups']}/history", 200, "of two groups")
    check_csv(checker, jobs["greedylr"], 1)
    check_csv(checker, jobs["groups"], 2)
    check_csv(checker, jobs["plateau-array"], 1)
    checker.call("GET", "/v1/jobs/no-such-job/history", 404, "of an unknown job")
    checker.call("GET", "/v1/jobs/no-such-job/history?format=csv", 404, "as CSV of an unknown job")
    for what, query in [("from_step -1", "from_step=-1"), ("to_step x", "to_step=x"),
                        ("from_step above to_step", "from_step=5&to_step=4"),
                        ("page_size 0", "page_size=0"), ("page_size 10001", "page_size=10001"),
                        ("max_points 0", "max_points=0"), ("format xml", "format=xml"),
                        ("a page token it never gave", "page_token=bogus")]:
        checker.call("GET", f"{path}?{query}", 422, f"with {what}")


def check_families(checker, client):
    """Families: tuned jobs, outcomes, the family filter, and the families routes."""
    tap = checker.tap
    made = checker.call("PUT", "/v1/jobs/fam-1", 201, "creates a tuned job of a family",
                        {"lr": 0.1, "family": "fam", "tune": True})
    if made.status == 201:
        tuned = made.json()["tuned"]
        tap.check(tuned["settings"]["lr_factor"] == 1 and tuned["from_jobs"] == 0,
                  "PUT /v1/jobs/fam-1: the first tuned job of a family gets the defaults")
    checker.call("PUT", "/v1/jobs/fam-1", 200, "the same tuned request again",
                 {"lr": 0.1, "family": "fam", "tune": True})
    checker.call("PUT", "/v1/jobs/fam-1", 409, "another request for the tuned job's id",
                 {"lr": 0.2, "family": "fam", "tune": True})
    checker.call("PATCH", "/v1/jobs/fam-1", 409, "gives a running job an outcome",
                 {"outcome": 0.5})
    report_many(checker, "fam-1", [2.0, 1.5, 1.25])
    done = checker.call("PATCH", "/v1/jobs/fam-1", 200, "finishes a job with its outcome",
                        {"status": "finished", "outcome": 0.75})
    if done.status == 200:
        tap.check(done.json()["outcome"] == {"value": 0.75, "source": "given", "last_loss": 1.25,
                                             "best_loss": 1.25},
                  "PATCH /v1/jobs/fam-1: the outcome given, and the losses it ended with")
    checker.call("PATCH", "/v1/jobs/fam-1", 422, "with an outcome that is not a number",
                 {"outcome": "Infinity"})
    second = checker.call("POST", "/v1/jobs", 201, "creates a second tuned job of the family",
                          {"lr": 0.1, "family": "fam", "tune": True, "config": {"total_steps": 9}})
    if second.status == 201:
        tap.check(second.json()["tuned"]["from_jobs"] == 1,
                  "POST /v1/jobs: the second tuned job learned from the first")
    checker.call("PUT", "/v1/jobs/other-1", 201, "creates a job of another family",
                 {"lr": 0.1, "family": "other"})
    for what, body in [("tune without a family", {"lr": 0.1, "tune": True}),
                       ("tune of a time-based policy",
                        {"lr": 0.1, "family": "fam", "tune": True, "policy": "cosine",
                         "config": {"t_max": 3}}),
                       ("tune with a tuned key in config",
                        {"lr": 0.1, "family": "fam", "tune": True,
                         "config": {"decrease_factor": 0.7}}),
                       ("a family that is not an id", {"lr": 0.1, "family": "a/b"})]:
        checker.call("PUT", "/v1/jobs/fam-bad", 422, f"with {what}", body)
    listed = checker.call("GET", "/v1/jobs?family=fam", 200, "filters by family")
    if listed.status == 200:
        tap.check(len(listed.json()["jobs"]) == 2, "GET /v1/jobs?family=fam lists its 2 jobs")
    checker.call("GET", "/v1/jobs?family=a%2Fb", 422, "with a family that is not an id")
    families = checker.call("GET", "/v1/families", 200, "lists the families")
    if families.status == 200:
        names = [f["name"] for f in families.json()["families"]]
        tap.check(names == ["fam", "other"], "GET /v1/families lists both", [f"found {names}"])
    first = checker.call("GET", "/v1/families?page_size=1", 200, "lists one family")
    token = first.json().get("next_page_token") if first.status == 200 else None
    checker.call("GET", "/v1/families?page_size=1&page_token=" + urllib.parse.quote(token or ""),
                 200, "follows the page token")
    for what, query in [("page_size 0", "page_size=0"), ("a page token it never gave",
                                                         "page_token=bogus")]:
        checker.call("GET", f"/v1/families?{query}", 422, f"with {what}")
    family = checker.call("GET", "/v1/families/fam", 200, "is the family")
    if family.status == 200:
        body = family.json()
        tap.check(body["finished"] == 1 and body["tuning"]["best"]["job"] == "fam-1",
                  "GET /v1/families/fam: one finished run, the best")
    checker.call("GET", "/v1/families/fam?policy=greedylr", 200, "as greedylr tuning sees it")
    checker.call("GET", "/v1/families/fam?policy=cosine", 422, "for a policy without tuning")
    checker.call("GET", "/v1/families/no-such-family", 404, "is unknown")
    check_learned(checker, second.json()["id"] if second.status == 201 else None)


def check_learned(checker, second_id):
    """The learned policy: POST /v1/families/{name}/learn, and jobs that run the model.
    Runs after check_families' counts: family fam has one finished run (fam-1, of 3 reports,
    too few to count) and a running tuned job, second_id."""
    tap = checker.tap
    learn = "/v1/families/fam/learn"
    checker.call("POST", learn, 422, "with one finished run, of 3 reports")
    checker.call("POST", "/v1/families/nobody/learn", 404, "of an unknown family")
    for what, body, valid in [
            ("policy learned without a family", {"lr": 0.1, "policy": "learned"}, None),
            ("policy learned of an unknown family",
             {"lr": 0.1, "policy": "learned", "family": "nobody"}, True),
            ("policy learned and a model in config",
             {"lr": 0.1, "policy": "learned", "family": "fam", "config": {"model": {}}}, None),
            ("policy learned and tune",
             {"lr": 0.1, "policy": "learned", "family": "fam", "tune": True}, None)]:
        checker.call("PUT", "/v1/jobs/fam-bad", 422, f"with {what}", body, body_valid=valid)
    learned = {"lr": 0.1, "policy": "learned", "family": "fam"}
    early = checker.call("PUT", "/v1/jobs/fam-l0", 201,
                         "creates a learned job of a family without a model", learned)
    if early.status == 201:
        job = early.json()
        tap.check(job["policy"] == "auto" and job["tuned"].get("fallback") == "auto"
                  and job["tuned"]["request"]["policy"] == "learned",
                  "PUT /v1/jobs/fam-l0: without a model the learned request runs auto",
                  [early.body.decode()])
    losses = [2.0, 1.8, 1.6, 1.5, 1.45, 1.4]
    for number, outcome in [(2, 0.7), (3, 0.8)]:
        job_id = f"fam-{number}"
        checker.call("PUT", f"/v1/jobs/{job_id}", 201, "creates another job of the family",
                     {"lr": 0.1, "family": "fam"})
        report_many(checker, job_id, losses)
        checker.call("PATCH", f"/v1/jobs/{job_id}", 200, "finishes it with its outcome",
                     {"status": "finished", "outcome": outcome})
    # fam-1 made 3 reports: fewer than a run needs to count, so two runs count so far.
    refused = checker.call("POST", learn, 422, "with two runs that count")
    if refused.status == 422:
        tap.check("2 finished runs" in refused.json()["detail"],
                  f"POST {learn}: the refusal counts the 2 runs", [refused.body.decode()])
    if second_id:
        report_many(checker, second_id, losses)
        checker.call("PATCH", f"/v1/jobs/{second_id}", 200, "finishes the second tuned job",
                     {"status": "finished", "outcome": 0.9})
    made = checker.call("POST", learn, 201, "learns from three runs")
    if made.status == 201:
        model = made.json()
        tap.check(model["version"] == 1 and model["family"] == "fam"
                  and model["fit"]["from_jobs"] == 3,
                  f"POST {learn}: version 1, learned from 3 runs", [made.body.decode()])
    job = checker.call("PUT", "/v1/jobs/fam-l1", 201, "creates a learned job", learned)
    if job.status == 201:
        body = job.json()
        tap.check(body["policy"] == "learned" and body["config"]["model_version"] == 1
                  and body["tuned"]["settings"] == {"model_version": 1},
                  "PUT /v1/jobs/fam-l1: the job runs version 1 of the family's model",
                  [job.body.decode()])
    checker.call("PUT", "/v1/jobs/fam-l1", 200, "the same learned request again", learned)
    report_many(checker, "fam-l1", [2.0, 1.9, 1.7, 1.6, 1.65])
    checker.call("GET", "/v1/jobs/fam-l1", 200, "is the learned job after reports")
    family = checker.call("GET", "/v1/families/fam", 200, "with a learned model")
    if family.status == 200:
        tap.check((family.json()["model"] or {}).get("version") == 1,
                  "GET /v1/families/fam: the newest model is version 1", [family.body.decode()])


def check_batch(checker, client):
    """POST /v1/reports: a batch of reports of several jobs, each answered in its place (a
    report's own problem among the others' answers); the batch as a whole refused."""
    tap = checker.tap
    path = "/v1/reports"
    checker.call("PUT", "/v1/jobs/batch-greedylr", 201, "creates a greedylr job for batches",
                 {"lr": 0.1, "config": POLICY_CONFIGS["greedylr"]})
    checker.call("PUT", "/v1/jobs/batch-cosine", 201, "creates a cosine job for batches",
                 {"policy": "cosine", "lr": 0.1, "config": {"t_max": 4}})
    good = [{"job": "batch-greedylr", "step": 0, "loss": 2.0},
            {"job": "batch-cosine", "step": 0},
            {"job": "batch-greedylr", "step": 1, "loss": "NaN", "rank": 0},
            {"job": "batch-cosine", "step": 1, "loss": None}]
    # (item, its status, its job and step in its result)
    refused = [({"job": "no-such-job", "step": 0, "loss": 1.0}, 404, "no-such-job", 0),
               ({"job": "batch-greedylr", "step": 0, "loss": 3.0}, 409, "batch-greedylr", 0),
               ({"job": "batch-greedylr", "step": -1, "loss": 1.0}, 422, "batch-greedylr", None),
               (7, 422, None, None),
               ({"job": "a/b", "step": 2, "loss": 1.0}, 422, None, 2),
               ({"job": "batch-cosine", "step": 5, "epoch": 1}, 422, "batch-cosine", 5)]
    batch = {"reports": good + [item for item, _, _, _ in refused]}

    def results_problems(response, replayed, first=None):
        """What is wrong with the results of the batch above."""
        if response.status != 200:
            return [f"status {response.status}"]
        results = response.json()["results"]
        if len(results) != len(batch["reports"]):
            return [f"{len(results)} results for {len(batch['reports'])} reports"]
        problems = []
        for index, (item, result) in enumerate(zip(good, results)):
            if (result.get("job"), result.get("step")) != (item["job"], item["step"]) \
                    or "lr" not in result or result.get("replayed", False) is not replayed:
                problems.append(f"result {index}: {json.dumps(result)}")
            elif first is not None and result["lr"] != first[index]["lr"]:
                problems.append(f"result {index}: lr {result['lr']}, first {first[index]['lr']}")
        for index, (_, status, job, step) in enumerate(refused, start=len(good)):
            result = results[index]
            problem = result.get("problem", {})
            found = (result.get("job"), result.get("step"), problem.get("status"))
            if found != (job, step, status):
                problems.append(f"result {index}: {json.dumps(result)}")
            elif status == 422 and not problem["detail"].startswith(f"reports[{index}]: "):
                problems.append(f"result {index}: the detail names no index: {problem['detail']}")
        return problems

    first = checker.call("POST", path, 200, "with good reports of two jobs and refused ones",
                         batch)
    tap.check(not results_problems(first, False),
              f"POST {path}: one result per report, in order: the decisions, and a problem "
              "404, 409 or 422 in the place of each refused report",
              results_problems(first, False))
    answers = first.json()["results"] if first.status == 200 else [{"lr": None}] * len(good)
    again = checker.call("POST", path, 200, "the same batch again (a retry)", batch)
    tap.check(not results_problems(again, True, answers),
              f"POST {path} again: each decided report is replayed with its stored answer, each "
              "refused one refused alike", results_problems(again, True, answers))
    lookup = checker.call("GET", "/v1/jobs/batch-greedylr/lr?step=1", 200,
                          "of a step a batch decided")
    tap.check(lookup.status == 200 and lookup.json()["lr"] == answers[2]["lr"],
              "a step decided in a batch is the job's decision", [lookup.body.decode()])
    single = checker.call("POST", "/v1/jobs/batch-cosine/reports", 200,
                          "of a step a batch decided, retried alone", {"step": 0})
    tap.check(single.status == 200 and single.json().get("replayed") is True
              and single.json()["lr"] == answers[1]["lr"],
              "a report a batch decided, retried alone, is replayed", [single.body.decode()])

    # Both ranks of one step in one batch: decided once, on both ranks.
    checker.call("PUT", "/v1/jobs/batch-ranks", 201, "creates a job of two ranks for batches",
                 {"lr": 0.1, "world_size": 2, "aggregate_timeout_ms": 20000})
    ranks = checker.call("POST", path, 200, "with both ranks of one step",
                         {"reports": [{"job": "batch-ranks", "step": 0, "loss": 1.0, "rank": 0},
                                      {"job": "batch-ranks", "step": 0, "loss": 3.0, "rank": 1}]})
    if ranks.status == 200:
        both = ranks.json()["results"]
        tap.check(len(both) == 2 and all(r.get("ranks") == 2 for r in both)
                  and both[0]["lr"] == both[1]["lr"],
                  f"POST {path}: both ranks of a step get one decision, made on 2 ranks",
                  [ranks.body.decode()])

    # A backfill of the most reports a batch may carry.
    checker.call("PUT", "/v1/jobs/batch-backfill", 201, "creates a constant job to backfill",
                 {"policy": "constant", "lr": 0.1})
    backfill = {"reports": [{"job": "batch-backfill", "step": step} for step in range(1000)]}
    full = checker.call("POST", path, 200, "with 1000 reports", backfill)
    if full.status == 200:
        results = full.json()["results"]
        tap.check([r.get("step") for r in results] == list(range(1000))
                  and all("lr" in r for r in results),
                  f"POST {path}: 1000 reports, 1000 decisions in order")

    # Faults of the batch as a whole refuse it.
    check_body_errors(checker, client, "POST", path)
    one = {"job": "batch-greedylr", "step": 2, "loss": 1.0}
    for what, body, detail in [
            ("with no reports", {"reports": []}, "reports must be an array of 1 to 1000 reports"),
            ("with 1001 reports", {"reports": [one] * 1001},
             "reports must be an array of 1 to 1000 reports"),
            ("with reports that are not an array", {"reports": one},
             "reports must be an array of 1 to 1000 reports"),
            ("without reports", {}, "reports must be an array of 1 to 1000 reports"),
            ("with an unknown field", {"report": [one]},
             "unknown field \"report\" in the batch (did you mean \"reports\"?)"),
            ("with a body that is an array", [one], None)]:
        response = checker.call("POST", path, 422, what, body)
        if detail is not None and response.status == 422:
            tap.check(response.json()["detail"] == detail, f"POST {path} {what}: the detail "
                      "says why", [response.body.decode()])
    history = checker.call("GET", "/v1/jobs/batch-greedylr/history", 200,
                           "after batches, some refused")
    if history.status == 200:
        tap.check([p["step"] for p in history.json()["points"]] == [0, 1],
                  "the refused batches reported nothing", [history.body.decode()])


def check_tokens(checker, client):
    """The token routes. Runs last: once a token exists, every other route needs one; the
    daemon (on loopback) is open again when the last is revoked."""
    check_body_errors(checker, client, "POST", "/v1/tokens")
    for what, body in [("without a role", {}), ("with role root", {"role": "root"}),
                       ("with a name of bad characters", {"role": "reader", "name": "a b"}),
                       ("with a field it does not know", {"role": "reader", "x": 1})]:
        checker.call("POST", "/v1/tokens", 422, what, body)
    checker.call("POST", "/v1/tokens", 409, "of role reader while no admin token exists",
                 {"role": "reader", "name": "early"})
    made = checker.call("POST", "/v1/tokens", 201, "makes the first admin token",
                        {"role": "admin", "name": "first"})
    client.token = made.json()["token"]
    checker.call("POST", "/v1/tokens", 201, "makes a reader token with a made-up name",
                 {"role": "reader"})
    checker.call("POST", "/v1/tokens", 409, "with a name taken", {"role": "reader",
                                                                 "name": "first"})
    listed = checker.call("GET", "/v1/tokens", 200, "lists them")
    names = [t["name"] for t in listed.json()["tokens"]]
    checker.call("DELETE", "/v1/tokens/first", 409, "the last admin, while a reader remains")
    for name in names:
        if name != "first":
            checker.call("DELETE", f"/v1/tokens/{name}", 204, "revokes a token")
    checker.call("DELETE", "/v1/tokens/nobody", 404, "of an unknown token")
    checker.call("DELETE", "/v1/tokens/first", 204, "revokes the last token")
    client.token = None


# ---- coverage --------------------------------------------------------------------------


def check_coverage(tap, spec, checker):
    """Every documented status was produced and every documented query parameter used."""
    for template, method, _ in spec.operations():
        documented = spec.statuses(template, method)
        numeric = {int(s) for s in documented if s.isdigit()}
        untestable = sorted(s for s in documented if not s.isdigit() or int(s) not in TESTABLE)
        missing = sorted(s for s in numeric & TESTABLE if (template, method, s) not in checker.seen)
        note = f" (not provoked: {', '.join(untestable)})" if untestable else ""
        tap.check(not missing, f"{method} {template}: every documented status was produced: "
                  f"{', '.join(str(s) for s in sorted(numeric & TESTABLE))}{note}",
                  [f"never produced: {missing}"])
        names = spec.query_names(template, method)
        unused = sorted(n for n in names if (template, method, n) not in checker.used_queries)
        if names:
            tap.check(not unused, f"{method} {template}: every documented query parameter "
                      f"was used ({', '.join(sorted(names))})", [f"unused: {unused}"])


# ---- main ------------------------------------------------------------------------------


def main():
    """Runs every check against a daemon of our own; returns the exit status."""
    srcdir = os.environ.get("GLR_SRCDIR", ".")
    tap = Tap()
    spec = Spec(os.path.join(srcdir, "api", "openapi.yaml"))
    check_document(tap, spec)
    with tempfile.TemporaryDirectory(prefix="greedylr-openapi-") as workdir:
        daemon = Daemon(workdir, extra_args=["--dashboard-dir", DASHBOARD])
        try:
            if tap.check(daemon.port is not None, f"the daemon listens (port {daemon.port})",
                         daemon.log_tail()):
                client = Client(daemon.port)
                checker = Checker(tap, spec, client)
                started = time.monotonic()
                check_routes(tap, spec, checker, client)
                check_health(checker)
                check_dashboard(checker, workdir)
                check_no_body(checker, spec)
                jobs = check_create(checker, client)
                check_get_and_list(checker, jobs)
                check_patch_and_delete(checker, client, jobs)
                check_reports(checker, client, jobs)
                check_history(checker, jobs)
                check_rewind(checker, client, jobs)
                check_ranks(checker, client)
                check_families(checker, client)
                check_batch(checker, client)
                check_tokens(checker, client)
                check_coverage(tap, spec, checker)
                print(f"# requests took {time.monotonic() - started:.1f} s")
        except Exception:  # a crash is a failed check, and the daemon must still stop
            tap.check(False, "the checks ran to the end", [traceback.format_exc()])
        finally:
            status = daemon.stop()
            tap.check(status == 0, f"the daemon stops cleanly on SIGTERM (exit {status})",
                      daemon.log_tail())
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
