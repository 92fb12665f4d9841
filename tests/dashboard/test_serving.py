"""How greedylrd serves the dashboard, over a real socket: types, compression, the
Content-Security-Policy, no way out of the directory, no token for the files (and one
for every datum), cross-origin requests, and the API description.
"""

import gzip
import http.client
import os
import re
import shutil

import yaml
from conftest import DASHBOARD, SLOW, make_token


def fetch(daemon, path, method="GET", headers=None):
    """(status, headers as a dict of lower-case names, body) of one raw request."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30 * SLOW)
    try:
        # skip_accept_encoding: the tests say which encodings they take.
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_files_have_their_types_and_a_strict_policy(daemon):
    for path, kind in [("/", "text/html"), ("/ui/app.js", "text/javascript"),
                       ("/ui/style.css", "text/css"), ("/ui/dygraph.min.js", "text/javascript")]:
        status, headers, body = fetch(daemon, path)
        assert status == 200, path
        assert headers["content-type"].startswith(kind), path
        assert headers["x-content-type-options"] == "nosniff"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "content-encoding" not in headers
        assert body


def test_files_come_compressed_when_gzip_is_taken(daemon):
    plain = fetch(daemon, "/ui/app.js")[2]
    status, headers, body = fetch(daemon, "/ui/app.js", headers={"Accept-Encoding": "gzip, br"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "accept-encoding" in headers["vary"].lower()
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 2
    _, headers, _ = fetch(daemon, "/ui/app.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in headers


def test_the_page_has_no_inline_script_or_style(daemon):
    page = fetch(daemon, "/")[2].decode()
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)  # no onclick= and the like
    assert not re.search(r"javascript:", page)


def test_nothing_outside_the_directory(daemon, own_daemon, tmp_path):
    # A directory of our own with a link to a file outside it, and a file of a type not served.
    ui = tmp_path / "ui"
    shutil.copytree(DASHBOARD, ui)
    secret = tmp_path / "secret.js"
    secret.write_text("TOP-SECRET-CONTENT")
    os.symlink(secret, ui / "link.js")
    (ui / "notes.txt").write_text("NOTES-CONTENT")
    (ui / "sub.js").mkdir()
    # One byte over API_STATIC_FILE_MAX (16 MiB): not served (a sparse file, no disk used).
    with open(ui / "huge.js", "wb") as huge:
        huge.truncate(16 * 1024 * 1024 + 1)
    with open(ui / "largest.js", "wb") as largest:
        largest.truncate(16 * 1024 * 1024)
    d = own_daemon("--dashboard-dir", str(ui))
    assert fetch(d, "/ui/app.js")[0] == 200
    status, _, body = fetch(d, "/ui/largest.js")
    assert status == 200 and len(body) == 16 * 1024 * 1024
    assert fetch(d, "/ui/" + "a" * 61 + ".js")[0] == 404  # 64 bytes: a name, not there
    for path in ["/ui/link.js", "/ui/notes.txt", "/ui/sub.js", "/ui/../Makefile",
                 "/ui/..%2fMakefile", "/ui/%2e%2e%2fsecret.js", "/ui/%2e%2e", "/ui/..",
                 "/ui/.", "/ui//etc/passwd", "/ui/%2fetc%2fpasswd", "/..%2f..%2fetc%2fpasswd",
                 "/ui/app.js%00.html", "/ui/.hidden.js", "/ui/app.js/", "/%2e%2e/secret.js",
                 "/ui/" + "a" * 62 + ".js", "/ui/huge.js"]:
        status, headers, body = fetch(d, path)
        assert status in (400, 404), f"{path}: {status}"
        assert b"SECRET-CONTENT" not in body and b"NOTES-CONTENT" not in body, path
        assert headers["content-type"] == "application/problem+json", path


def test_files_need_no_token_and_data_does(own_daemon, tmp_path):
    db = str(tmp_path / "test.db")
    make_token(db, "admin", "admin")
    d = own_daemon(workdir=str(tmp_path))
    for path in ["/", "/ui/app.js", "/v1/openapi.yaml"]:
        assert fetch(d, path)[0] == 200, path
    status, headers, _ = fetch(d, "/v1/jobs")
    assert status == 401 and "bearer" in headers["www-authenticate"].lower()


def test_the_api_description_is_served(daemon):
    status, headers, body = fetch(daemon, "/v1/openapi.yaml")
    assert status == 200 and headers["content-type"].startswith("application/yaml")
    document = yaml.safe_load(body)
    assert document["openapi"].startswith("3.1")
    for path in ["/", "/ui/{name}", "/v1/openapi.yaml", "/v1/jobs/{id}/history"]:
        assert path in document["paths"], path


def test_cross_origin_requests_are_refused_by_default(daemon):
    status, headers, body = fetch(daemon, "/v1/jobs", headers={"Origin": "http://evil.example"})
    assert status == 403 and b"cross-origin" in body
    assert "access-control-allow-origin" not in headers
    status, headers, _ = fetch(daemon, "/v1/jobs", method="OPTIONS",
                               headers={"Origin": "http://evil.example",
                                        "Access-Control-Request-Method": "GET"})
    assert status == 403 and "access-control-allow-origin" not in headers
    # The page's own origin is no cross-origin request.
    own = f"http://127.0.0.1:{daemon.port}"
    assert fetch(daemon, "/v1/jobs", headers={"Origin": own})[0] == 200


def test_the_origin_named_gets_cors_headers(own_daemon):
    named = "https://grafana.example:3000"
    d = own_daemon("--cors-origin", named)
    status, headers, _ = fetch(d, "/v1/jobs", headers={"Origin": named})
    assert status == 200 and headers["access-control-allow-origin"] == named
    assert "origin" in headers["vary"].lower()
    status, headers, body = fetch(d, "/v1/jobs/x/history", method="OPTIONS",
                                  headers={"Origin": named,
                                           "Access-Control-Request-Method": "GET",
                                           "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and not body
    assert headers["access-control-allow-origin"] == named
    assert "GET" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()
    # An error answered to that origin carries them too, so its page can read why.
    status, headers, _ = fetch(d, "/v1/jobs/missing", headers={"Origin": named})
    assert status == 404 and headers["access-control-allow-origin"] == named
    for other in ["https://grafana.example:3001", "http://grafana.example:3000", "null"]:
        status, headers, _ = fetch(d, "/v1/jobs", headers={"Origin": other})
        assert status == 403 and "access-control-allow-origin" not in headers, other


def test_a_bad_cors_origin_or_dashboard_dir_is_refused(tmp_path):
    import subprocess

    import glrdaemon
    longest = "https://" + "a" * (256 - len("https://"))  # API_ORIGIN_MAX
    (tmp_path / "longest").mkdir()
    d = glrdaemon.Daemon(str(tmp_path / "longest"), extra_args=["--cors-origin", longest])
    assert d.port is not None, d.log_tail()
    assert d.stop() == 0
    for args in (["--cors-origin", "grafana.example"], ["--cors-origin", "https://a/b"],
                 ["--cors-origin", longest + "a"], ["--cors-origin", "https://a b"],
                 ["--dashboard-dir", str(tmp_path / "missing")]):
        answer = subprocess.run([glrdaemon.program(), "--listen", "127.0.0.1:0", "--db",
                                 str(tmp_path / "x.db")] + args, capture_output=True,
                                text=True, timeout=60 * SLOW)
        assert answer.returncode != 0, args
        assert answer.stderr, args
