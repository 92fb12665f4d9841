"""The dashboard in a real browser, against a real daemon: what a person would see.

Each test makes its own jobs through the API, opens a view in headless Chromium, and
reads the page (its text, and the chart's data through window.glrDash, which gives what
dygraphs holds), never a screenshot. The screenshots at the end are for the README.
"""

import os
import time
import urllib.parse

import pytest
from conftest import SLOW, Api, make_token, wait_for

XSS = "<img src=x onerror=alert(1)>"


def rows_of(browser):
    """The ids of the jobs the list shows."""
    return [r.get_attribute("data-id")
            for r in browser.find_elements("css selector", "#jobs-body tr")]


def chart_rows(browser):
    return browser.execute_script("return window.glrDash.chartRows()")


def history_rows(api, job_id, **query):
    """[step, loss, lr] of the history route, as the chart should hold them."""
    params = urllib.parse.urlencode(dict({"max_points": 2000}, **query))
    points = api.ok("GET", f"/v1/jobs/{job_id}/history?{params}")["points"]
    return [[p["step"], p["loss"], p["lr"]] for p in points]


def open_page(browser, url):
    """Opens url as a fresh page (a hash change alone would keep the old view)."""
    browser.get("about:blank")
    browser.get(url)


def test_list_shows_the_jobs(browser, daemon, api, job_id):
    ids = [f"{job_id}-{k}" for k in range(3)]
    for k, i in enumerate(ids):
        api.job(i, tags={"suite": job_id, "family": "resnet"})
        api.report(i, k + 1)
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}")
    assert wait_for(lambda: rows_of(browser) == ids, what="the three jobs")
    first = browser.find_element("css selector", f"#jobs-body tr[data-id='{ids[2]}']")
    cells = [c.text for c in first.find_elements("css selector", "td")]
    assert cells[1:5] == [ids[2], "running", "greedylr", "resnet"]
    assert cells[6] == "2"  # last step


def test_list_shows_a_jobs_family(browser, daemon, api, job_id):
    """A job's own family, which wins over a tag of that name."""
    api.job(job_id, tags={"suite": job_id, "family": "from-a-tag"}, family="from-the-job")
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}")
    assert wait_for(lambda: rows_of(browser) == [job_id], what="the job")
    row = browser.find_element("css selector", f"#jobs-body tr[data-id='{job_id}']")
    assert [c.text for c in row.find_elements("css selector", "td")][4] == "from-the-job"


def test_list_pages_and_filters(browser, daemon, api, job_id):
    """Pages of the API's size (50): the second page holds the rest; status filters."""
    ids = [f"{job_id}-{k:02d}" for k in range(55)]
    for i in ids:
        api.job(i, tags={"suite": job_id})
    api.ok("PATCH", f"/v1/jobs/{ids[0]}", {"status": "finished"})
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}")
    assert wait_for(lambda: rows_of(browser) == ids[:50], what="the first page")
    browser.find_element("id", "next").click()
    assert wait_for(lambda: rows_of(browser) == ids[50:], what="the second page")
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}&status=finished")
    assert wait_for(lambda: rows_of(browser) == ids[:1], what="the finished job alone")


def test_list_refreshes_itself(browser, daemon, api, job_id):
    api.job(f"{job_id}-a", tags={"suite": job_id})
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}")
    assert wait_for(lambda: rows_of(browser) == [f"{job_id}-a"], what="the first job")
    api.job(f"{job_id}-b", tags={"suite": job_id})
    assert wait_for(lambda: len(rows_of(browser)) == 2, timeout=8, what="the job added later")


def test_chart_holds_the_points_the_api_returned(browser, daemon, api, job_id):
    api.job(job_id)
    api.report(job_id, 300)
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    want = history_rows(api, job_id)
    assert len(want) == 300
    assert wait_for(lambda: chart_rows(browser) == want, what="the chart's 300 points")
    assert browser.find_element("id", "job-title").text == job_id
    fields = browser.find_element("id", "job-fields").text
    assert "last step 299" in fields and "reports 300" in fields


def test_events_are_marked(browser, daemon, api, job_id):
    api.job(job_id, config={"patience": 1, "warmup": 3})
    api.report(job_id, 60)
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    events = {p["event"] for p in api.ok("GET", f"/v1/jobs/{job_id}/history")["points"]}
    shown = wait_for(lambda: browser.find_elements("css selector", "#event-key li[class^=ev-]"),
                     what="the event key")
    assert {e.text for e in shown} == events - {"hold"}


def test_rewinds_are_marked(browser, daemon, api, job_id):
    """The history keeps only what followed a rewind: the mark comes from its record."""
    api.job(job_id)
    api.report(job_id, 30)
    api.ok("POST", f"/v1/jobs/{job_id}/rewind", {"to_step": 9})
    api.report(job_id, 10, first=10)
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    shown = wait_for(lambda: [e.text for e in browser.find_elements(
        "css selector", "#event-key li.ev-rewind")], what="the rewind in the key")
    assert shown == ["rewind"]


def test_a_new_report_appears_within_2_seconds(browser, daemon, api, job_id):
    api.job(job_id)
    api.report(job_id, 10)
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    wait_for(lambda: len(chart_rows(browser)) == 10, what="the first 10 points")
    time.sleep(0.3)  # the page is now waiting on the lr route for step 10
    sent = time.monotonic()
    api.report(job_id, 1, first=10)
    wait_for(lambda: len(chart_rows(browser)) == 11, timeout=2, interval=0.01,
             what="step 10 on the chart")
    took = time.monotonic() - sent
    assert took <= 2 * SLOW, f"the new report took {took:.2f} s to appear"
    assert chart_rows(browser)[-1][0] == 10


def test_leaving_a_followed_job_frees_its_connection(browser, daemon, api, job_id):
    """A page left while it follows a job must not keep its wait open: the browser has six
    connections to the daemon, and the seventh page would wait for a stale wait to end."""
    api.job(job_id)
    api.report(job_id, 5)
    for visit in range(12):
        started = time.monotonic()
        if visit < 8:
            open_page(browser, f"{daemon.url}/#/job/{job_id}")  # another page, then back
        else:
            browser.get(f"{daemon.url}/#/")  # within the page: another view, then back
            browser.get(f"{daemon.url}/#/job/{job_id}")
        wait_for(lambda: len(chart_rows(browser)) == 5, timeout=5,
                 what=f"the chart of visit {visit}")
        took = time.monotonic() - started
        assert took < 5 * SLOW, f"visit {visit} took {took:.1f} s"


def test_zooming_asks_for_the_zoomed_range(browser, daemon, api, job_id):
    from selenium.webdriver.common.action_chains import ActionChains

    steps = 4000
    api.job(job_id)
    api.report(job_id, steps)
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    # The whole run comes sampled: fewer points than steps.
    wait_for(lambda: 0 < len(chart_rows(browser)) < steps, what="the sampled run")
    before = browser.execute_script("return window.glrDash.requests.length")
    canvas = browser.find_element("css selector", "#chart canvas")
    width = canvas.size["width"]
    # A drag across the middle fifth zooms in, as a person would.
    ActionChains(browser).move_to_element_with_offset(canvas, int(-width * 0.1), 0) \
        .click_and_hold().move_by_offset(int(width * 0.2), 0).release().perform()

    def zoom_request():
        asked = browser.execute_script("return window.glrDash.requests")[before:]
        for r in asked:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(r["path"]).query)
            if "/history" in r["path"] and "from_step" in query and "to_step" in query:
                return int(query["from_step"][0]), int(query["to_step"][0])
        return None
    low, high = wait_for(zoom_request, what="a history request of the zoomed range")
    assert 0 < low < high < steps - 1
    shown = browser.execute_script("return window.glrDash.chart.xAxisRange()")
    assert abs(shown[0] - low) <= 1 and abs(shown[1] - high) <= 1
    # Inside the range the chart now holds every step: the detail of this zoom level.
    want = history_rows(api, job_id, from_step=low, to_step=high)
    assert len(want) == high - low + 1

    def inside():
        return [r for r in chart_rows(browser) if low <= r[0] <= high] == want
    assert wait_for(inside, what="every step of the zoomed range")


def test_each_ranks_loss_is_drawn(browser, daemon, api, job_id):
    import concurrent.futures
    api.job(job_id, world_size=3)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for step in range(20):
            # A rank's report waits for the others: the three go together.
            list(pool.map(lambda r, step=step: api.ok(
                "POST", f"/v1/jobs/{job_id}/reports",
                {"step": step, "rank": r, "loss": 1.0 + r + step / 100}), range(3)))
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    want = [[s] + [1.0 + r + s / 100 for r in range(3)] for s in range(20)]
    got = wait_for(lambda: browser.execute_script("return window.glrDash.rankRows()"),
                   what="the ranks' chart")
    assert [[r[0]] + [pytest.approx(v) for v in r[1:]] for r in want] == got
    assert "3 of 3 ranks" in browser.find_element("id", "ranks-info").text


def test_compare_overlays_two_jobs(browser, daemon, api, job_id):
    a, b = f"{job_id}-a", f"{job_id}-b"
    api.job(a)
    api.job(b)
    api.report(a, 40, loss=lambda s: 3.0 - 0.01 * s)
    api.report(b, 30, first=5, loss=lambda s: 2.0 - 0.02 * s)
    open_page(browser, f"{daemon.url}/#/compare?ids={a},{b}")
    labels = wait_for(lambda: browser.execute_script("return window.glrDash.compareLabels()"),
                      what="the compare chart")
    assert labels == ["step", a, b]
    assert browser.find_element("id", "c-key").text.split() == [a, b]
    rows = browser.execute_script("return window.glrDash.compareRows()")
    by_step = {r[0]: r[1:] for r in rows}
    assert sorted(by_step) == list(range(40))  # aligned by step: the union of both
    assert by_step[10][0] == pytest.approx(2.9) and by_step[10][1] == pytest.approx(1.8)
    assert by_step[0][1] is None and by_step[39][1] is None  # b reported steps 5 to 34


def test_compare_by_tag(browser, daemon, api, job_id):
    ids = [f"{job_id}-{k}" for k in range(3)]
    for i in ids:
        api.job(i, tags={"family": job_id})
        api.report(i, 5)
    open_page(browser, f"{daemon.url}/#/compare?tag=family:{job_id}")
    labels = wait_for(lambda: browser.execute_script("return window.glrDash.compareLabels()"),
                      what="the compare chart")
    assert labels == ["step"] + ids


def test_an_xss_tag_shows_as_text(browser, daemon, api, job_id):
    api.job(job_id, tags={"note": XSS, "suite": job_id})
    open_page(browser, f"{daemon.url}/#/?tag=suite:{job_id}")
    wait_for(lambda: rows_of(browser) == [job_id], what="the job")
    tags = browser.find_element("css selector", "#jobs-body td.tags").text
    assert f"note={XSS}" in tags
    assert not browser.find_elements("css selector", "main img")
    open_page(browser, f"{daemon.url}/#/job/{job_id}")
    wait_for(lambda: XSS in browser.find_element("id", "job-tags").text, what="the tag as text")
    assert not browser.find_elements("css selector", "main img")
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    logs = browser.get_log("browser")
    assert not [e for e in logs if "alert" in e.get("message", "")]
    # Nothing of ours breaks the page's policy. (dygraphs' legend measures one em with a
    # style attribute, which the policy blocks, harmlessly: the width is for dashed lines.)
    broken = [e["message"] for e in logs if "Content Security Policy" in e.get("message", "")
              and "dygraph.min.js" not in e["message"]]
    assert not broken


def test_tokens_no_data_without_one_and_a_reader_works(browser, own_daemon, tmp_path):
    work = tmp_path / "tokens"
    work.mkdir()
    db = str(work / "test.db")
    admin = make_token(db, "admin", "admin")
    reader = make_token(db, "reader", "dashboard")
    d = own_daemon(workdir=str(work))
    Api(d.url, admin).job("secret-job", tags={"team": "vision"})
    open_page(browser, f"{d.url}/")
    auth = browser.find_element("id", "auth")
    wait_for(auth.is_displayed, what="the token form")
    assert "401" in browser.find_element("id", "auth-message").text
    assert rows_of(browser) == []
    assert "secret-job" not in browser.find_element("tag name", "main").text
    browser.find_element("id", "auth-token").send_keys(reader)
    browser.find_element("css selector", "#auth-form button").click()
    assert wait_for(lambda: rows_of(browser) == ["secret-job"], what="the job, with the token")
    assert not auth.is_displayed()
    stored = browser.execute_script("return sessionStorage.getItem('greedylr.token')")
    assert stored == reader
    # A wrong token is refused as such, and nothing is shown with it.
    browser.execute_script("sessionStorage.setItem('greedylr.token', 'glr_' + '0'.repeat(64))")
    open_page(browser, f"{d.url}/#/job/secret-job")
    wait_for(lambda: browser.find_element("id", "auth").is_displayed(),
             what="the token form again")
    assert "401" in browser.find_element("id", "auth-message").text
    assert browser.execute_script("return window.glrDash.chartRows().length") == 0
    browser.execute_script("sessionStorage.clear()")


def test_screenshots(browser, own_daemon):
    """Each view on demo data, as PNG: into $GLR_SCREENSHOT_DIR when set (the README's)."""
    import math
    out = os.environ.get("GLR_SCREENSHOT_DIR")
    d = own_daemon()
    api = Api(d.url)
    runs = [("resnet50-lr0.1", "resnet50", 0.1, 0), ("resnet50-lr0.3", "resnet50", 0.3, 1),
            ("resnet50-lr0.03", "resnet50", 0.03, 2), ("vit-small", "vit", 0.05, 3),
            ("vit-base", "vit", 0.05, 4), ("bert-mini", "bert", 0.01, 5)]
    for name, family, lr, k in runs:
        api.ok("PUT", f"/v1/jobs/{name}", {"lr": lr, "config": {"patience": 12},
                                          "tags": {"family": family, "team": "vision"}})

        def loss(s, k=k):
            return (2.4 - 0.2 * k) * math.exp(-s / (250 + 60 * k)) + 0.25 + 0.02 * k + \
                0.04 * math.sin(s / 9.0 + k) * math.exp(-s / 900)
        api.report(name, 800 - 90 * k, loss=loss)
    api.ok("PATCH", "/v1/jobs/bert-mini", {"status": "finished"})
    shots = []
    browser.set_window_size(1200, 620)
    open_page(browser, f"{d.url}/#/")
    wait_for(lambda: len(rows_of(browser)) == len(runs), what="the demo jobs")
    shots.append(("dashboard-jobs.png", browser.get_screenshot_as_png()))
    browser.set_window_size(1200, 820)
    open_page(browser, f"{d.url}/#/job/resnet50-lr0.1")
    wait_for(lambda: len(chart_rows(browser)) == 800, what="the demo chart")
    shots.append(("dashboard-job.png", browser.get_screenshot_as_png()))
    browser.set_window_size(1200, 1000)
    open_page(browser, f"{d.url}/#/compare?tag=family:resnet50")
    wait_for(lambda: len(browser.execute_script("return window.glrDash.compareLabels()")) == 4,
             what="the demo comparison")
    shots.append(("dashboard-compare.png", browser.get_screenshot_as_png()))
    browser.set_window_size(1280, 900)
    for name, png in shots:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
        if out:
            with open(os.path.join(out, name), "wb") as f:
                f.write(png)
