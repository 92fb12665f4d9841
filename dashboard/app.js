/*
 * The greedylr dashboard: jobs, one job's loss and lr, and jobs compared, all read from the
 * public API of the daemon that serves this page. Data is only ever written into the page
 * as text (textContent), never as HTML. Charts are dygraphs; zooming or panning asks the
 * history route for the range shown, with max_points, so every zoom level has detail.
 */
'use strict';

(function () {
  /* Points asked of the history route for one chart: about one per pixel of a wide screen. */
  const MAX_POINTS = 2000;
  /* Jobs per page of the list: the API's default. */
  const PAGE_SIZE = 50;
  /* How often the list asks again, in milliseconds. */
  const LIST_REFRESH_MS = 5000;
  /* How long one live-follow request waits for the next step (the API allows 60000). */
  const FOLLOW_WAIT_MS = 25000;
  /* Points per page when following reads the steps it missed (the API's most). */
  const FOLLOW_PAGE = 10000;
  /* Wait after a zoom or pan settles before asking for its range, in milliseconds. */
  const RANGE_SETTLE_MS = 120;
  /* Most ranks' losses read for one view: one page of the ranks route. */
  const RANKS_MAX_POINTS = 10000;
  /* Most ranks drawn, each a line of its own. */
  const RANKS_SHOWN = 16;
  /* Where the token is kept: this tab's session storage, never on disk for long. */
  const TOKEN_KEY = 'greedylr.token';
  const EVENTS = ['increase', 'decrease', 'reset', 'cooldown', 'warmup', 'diverged', 'capped',
    'anneal', 'rewind'];
  const EVENT_COLORS = {
    increase: '#2ca02c', decrease: '#d62728', reset: '#9467bd', cooldown: '#7f7f7f',
    warmup: '#ff7f0e', diverged: '#000000', capped: '#8c564b', anneal: '#17becf',
    rewind: '#e377c2',
  };
  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b',
    '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

  const $ = (id) => document.getElementById(id);

  /*
   * What tests and benchmarks read: every API request made (path and time), and the
   * charts' data as drawn. Nothing here changes what a person sees.
   */
  const probe = {
    requests: [],
    drawn: 0,
    firstDrawAt: 0, /* performance.now() of the first chart drawn: from the page's request */
    lastDrawAt: 0,
    chart: null,
    compare: null,
    listedAt: 0,
    firstListedAt: 0,
    ranks: null,
    chartRows() { return rowsOf(probe.chart); },
    rankRows() { return rowsOf(probe.ranks); },
    compareLabels() { return probe.compare ? probe.compare.loss.getLabels() : []; },
    compareRows() { return probe.compare ? rowsOf(probe.compare.loss) : []; },
    /* Zooms the job chart to [from, to] as a drag would; resolves once redrawn. */
    zoom(from, to) { return view && view.zoomTo ? view.zoomTo(from, to) : Promise.reject(); },
  };
  window.glrDash = probe;

  /* The values a dygraph holds, row by row: what it draws. */
  function rowsOf(g) {
    if (!g) return [];
    const rows = [];
    const cols = g.numColumns();
    for (let i = 0; i < g.numRows(); i++) {
      const row = [];
      for (let c = 0; c < cols; c++) row.push(g.getValue(i, c));
      rows.push(row);
    }
    return rows;
  }

  /* ---- the API ------------------------------------------------------------------------ */

  class ApiError extends Error {
    constructor(status, detail, type) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.type = type || '';
    }
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  /*
   * GET path from the API. Resolves to the parsed JSON (text with as: 'text', null for a
   * 204); rejects with an ApiError carrying the status and the problem's detail. A 401 or
   * 403 also shows the token form, saying which it was.
   */
  async function get(path, opts = {}) {
    const headers = { Accept: opts.as === 'text' ? 'text/csv' : 'application/json' };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    probe.requests.push({ path, at: performance.now() });
    let answer;
    try {
      answer = await fetch(path, { headers, signal: opts.signal, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'the daemon does not answer');
    }
    if (answer.status === 204) return null;
    if (!answer.ok) {
      let detail = '';
      let type = '';
      try {
        const problem = await answer.json();
        detail = problem.detail || '';
        type = problem.type || '';
      } catch (e) { /* not problem+json: the status says enough */ }
      if (answer.status === 401 || answer.status === 403) showAuth(answer.status, detail);
      throw new ApiError(answer.status, detail, type);
    }
    hideAuth();
    return opts.as === 'text' ? answer.text() : answer.json();
  }

  const enc = encodeURIComponent;
  const query = (params) => Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');

  /* ---- what every view shares ---------------------------------------------------------- */

  function text(el, value) { el.textContent = value === undefined || value === null ? '' : String(value); }

  function cell(row, value, cls) {
    const td = document.createElement('td');
    text(td, value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function showError(err) {
    const box = $('error');
    if (!err || (err.status === 401 || err.status === 403)) {
      box.hidden = true;
      return;
    }
    text(box, err.message || String(err));
    box.hidden = false;
  }

  function setStatus(message) { text($('status'), message); }

  function showAuth(status, detail) {
    const message = status === 401
      ? `This daemon asks for an API token (401${detail ? `: ${detail}` : ''}). ` +
        'Enter one to see its data.'
      : `The token given lacks the role this needs (403${detail ? `: ${detail}` : ''}). ` +
        'Enter a token with the reader role at least.';
    text($('auth-message'), message);
    $('auth').hidden = false;
    $('auth').dataset.status = String(status);
  }

  function hideAuth() {
    $('auth').hidden = true;
    delete $('auth').dataset.status;
    $('forget-token').hidden = !token();
  }

  function formatLr(lr) {
    if (lr === null || lr === undefined) return '';
    if (Array.isArray(lr)) return lr.map(formatLr).join(', ');
    return typeof lr === 'number' ? Number(lr.toPrecision(5)).toString() : String(lr);
  }

  /* A loss as a chart value: a number, or null for a gap (NaN, Infinity, none). */
  function value(x) { return typeof x === 'number' && Number.isFinite(x) ? x : null; }
  /* One lr of a point: the first group's when the job has several. */
  function firstLr(lr) { return Array.isArray(lr) ? value(lr[0]) : value(lr); }

  function formatTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const two = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  /* A dygraph legend of plain text: series names and values are escaped before dygraphs sees them. */
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({
      '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
    })[c]);
  }
  function legendFormatter(data) {
    if (data.x === undefined || data.x === null) return '';
    const parts = [`step ${escapeHtml(data.xHTML)}`];
    for (const s of data.series) {
      if (s.isVisible && s.y !== undefined && s.y !== null && !Number.isNaN(s.y)) {
        parts.push(`${escapeHtml(s.label)}: ${escapeHtml(s.yHTML)}`);
      }
    }
    return parts.join(' &nbsp; ');
  }

  /* ---- the views ------------------------------------------------------------------------ */

  let view = null; /* the view shown: {stop()} and maybe zoomTo() */

  function route() {
    const hash = location.hash || '#/';
    const [path, search] = hash.slice(1).split('?');
    return { path, params: new URLSearchParams(search || '') };
  }

  function render() {
    if (view) view.stop();
    view = null;
    probe.chart = null;
    probe.ranks = null;
    probe.compare = null;
    showError(null);
    for (const id of ['view-jobs', 'view-job', 'view-compare']) $(id).hidden = true;
    const r = route();
    if (r.path.startsWith('/job/')) {
      view = jobView(decodeURIComponent(r.path.slice(5)));
    } else if (r.path === '/compare') {
      view = compareView(r.params);
    } else {
      view = listView(r.params);
    }
  }

  /* ---- jobs ----------------------------------------------------------------------------- */

  const selected = new Set(); /* ids ticked for comparing, kept across pages */

  function listView(params) {
    $('view-jobs').hidden = false;
    const status = params.get('status') || '';
    const tag = params.get('tag') || '';
    $('f-status').value = status;
    $('f-tag').value = tag;
    const pages = [null]; /* page_token of each page seen; [0] is the first */
    let page = 0;
    let timer = null;
    let stopped = false;
    let shown = [];
    let controller = new AbortController();

    async function load() {
      controller.abort();
      controller = new AbortController();
      try {
        const list = await get(`/v1/jobs?${query({
          page_size: PAGE_SIZE, status, tag, page_token: pages[page],
        })}`, { signal: controller.signal });
        if (stopped) return;
        pages[page + 1] = list.next_page_token;
        shown = list.jobs;
        fill(list.jobs);
        $('prev').disabled = page === 0;
        $('next').disabled = !list.next_page_token;
        text($('page-info'), `page ${page + 1}`);
        setStatus(`updated ${new Date().toLocaleTimeString()}`);
        probe.listedAt = performance.now();
        if (!probe.firstListedAt) probe.firstListedAt = probe.listedAt;
        showError(null);
      } catch (e) {
        if (e.name !== 'AbortError' && !stopped) {
          showError(e);
          fill([]);
        }
      }
    }

    function fill(jobs) {
      const body = $('jobs-body');
      const rows = [];
      for (const job of jobs) {
        const tr = document.createElement('tr');
        tr.dataset.id = job.id;
        const tick = document.createElement('input');
        tick.type = 'checkbox';
        tick.checked = selected.has(job.id);
        tick.addEventListener('change', () => {
          if (tick.checked) selected.add(job.id); else selected.delete(job.id);
        });
        cell(tr, '').appendChild(tick);
        const link = document.createElement('a');
        link.href = `#/job/${enc(job.id)}`;
        text(link, job.id);
        cell(tr, '', 'id').appendChild(link);
        cell(tr, job.status, `state-${job.status}`);
        cell(tr, job.policy);
        cell(tr, job.family || (job.tags && job.tags.family));
        const tags = cell(tr, '', 'tags');
        for (const [k, v] of Object.entries(job.tags || {})) {
          const span = document.createElement('span');
          span.className = 'tag';
          text(span, `${k}=${v}`);
          tags.appendChild(span);
        }
        cell(tr, job.last_step, 'num');
        cell(tr, formatLr(job.lr), 'num');
        cell(tr, formatTime(job.updated_at));
        rows.push(tr);
      }
      body.replaceChildren(...rows);
      $('jobs-empty').hidden = jobs.length > 0;
    }

    const onPrev = () => { if (page > 0) { page--; load(); } };
    const onNext = () => { if (pages[page + 1]) { page++; load(); } };
    const onFilter = (e) => {
      e.preventDefault();
      location.hash = `#/?${query({ status: $('f-status').value, tag: $('f-tag').value.trim() })}`;
    };
    const onOpen = async () => {
      const id = $('f-search').value.trim();
      if (!id) return;
      try {
        await get(`/v1/jobs/${enc(id)}`);
        location.hash = `#/job/${enc(id)}`;
      } catch (e) {
        showError(e.status === 404 ? new Error(`No job has the id ${id}.`) : e);
      }
    };
    const onSearchKey = (e) => { if (e.key === 'Enter') { e.preventDefault(); onOpen(); } };
    const onCompareSelected = () => {
      if (selected.size) location.hash = `#/compare?${query({ ids: [...selected].join(',') })}`;
    };
    const onComparePage = () => {
      if (shown.length) location.hash = `#/compare?${query({ ids: shown.map((j) => j.id).join(',') })}`;
    };
    const bindings = [
      [$('prev'), 'click', onPrev], [$('next'), 'click', onNext],
      [$('filters'), 'submit', onFilter], [$('f-open'), 'click', onOpen],
      [$('f-search'), 'keydown', onSearchKey],
      [$('compare-selected'), 'click', onCompareSelected],
      [$('compare-page'), 'click', onComparePage],
    ];
    for (const [el, ev, fn] of bindings) el.addEventListener(ev, fn);
    load();
    timer = setInterval(load, LIST_REFRESH_MS);
    return {
      reload: load,
      stop() {
        stopped = true;
        clearInterval(timer);
        controller.abort();
        for (const [el, ev, fn] of bindings) el.removeEventListener(ev, fn);
      },
    };
  }

  /* ---- one job ---------------------------------------------------------------------------- */

  /*
   * [step, loss, lr] rows and the events (steps that were not holds) of history points,
   * and the rewinds of the answer, each marked at the step the job went back to.
   */
  function rowsFromPoints(points, rewinds = []) {
    const rows = new Array(points.length);
    const events = [];
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      rows[i] = [p.step, value(p.loss), firstLr(p.lr)];
      if (p.event && p.event !== 'hold') events.push({ step: p.step, event: p.event });
    }
    for (const r of rewinds) events.push({ step: Math.max(0, r.to_step), event: 'rewind' });
    return { rows, events };
  }

  /*
   * The rows to draw: the overview (the whole run, sampled) outside [from, to], and the
   * detail fetched for it inside, so that panning and zooming out still show the rest.
   */
  function merge(overview, detail, from, to) {
    if (!detail) return overview;
    const before = overview.filter((r) => r[0] < from);
    const after = overview.filter((r) => r[0] > to);
    return before.concat(detail, after);
  }

  /* Table rows of [name, value] pairs: the name as a header cell, both as text. */
  function keyValueRows(pairs) {
    return pairs.map(([k, v]) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      text(th, k);
      tr.appendChild(th);
      cell(tr, v);
      return tr;
    });
  }

  function fillFields(job) {
    const fields = [
      ['id', job.id], ['status', job.status], ['policy', job.policy],
      ['lr', formatLr(job.lr)], ['initial lr', formatLr(job.initial_lr)],
      ['last step', job.last_step], ['reports', job.reports], ['rewinds', job.rewinds],
      ['ranks', job.world_size], ['aggregate', job.aggregate],
      ['created', formatTime(job.created_at)], ['updated', formatTime(job.updated_at)],
    ];
    const table = $('job-fields');
    table.replaceChildren(...keyValueRows(fields));
    const tags = Object.entries(job.tags || {});
    $('job-tags').replaceChildren(...keyValueRows(tags));
    text($('job-config'), JSON.stringify(job.config, null, 2));
    text($('job-state'), JSON.stringify(job.state, null, 2));
    text($('job-title'), job.id);
  }

  /* A key item: a swatch of class cls, then label as text. */
  function keyItem(cls, label) {
    const li = document.createElement('li');
    li.className = cls;
    text(li, label);
    return li;
  }

  function eventKey(seen) {
    $('event-key').replaceChildren(keyItem('c0 series', 'loss'), keyItem('lr-series', 'lr'),
      ...EVENTS.filter((e) => seen.has(e)).map((e) => keyItem(`ev-${e}`, e)));
  }

  /* Draws each event of the window as a thin vertical line in its color. */
  function eventUnderlay(eventsOf) {
    return (ctx, area, g) => {
      const [lo, hi] = g.xAxisRange();
      for (const e of eventsOf()) {
        if (e.step < lo || e.step > hi) continue;
        const x = g.toDomXCoord(e.step);
        ctx.fillStyle = EVENT_COLORS[e.event] || '#999999';
        ctx.globalAlpha = 0.3;
        ctx.fillRect(Math.round(x), area.y, 1, area.h);
      }
      ctx.globalAlpha = 1;
    };
  }

  /* Downloads text as a file named name. */
  function download(name, body) {
    const url = URL.createObjectURL(new Blob([body], { type: 'text/csv' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function jobView(id) {
    $('view-job').hidden = false;
    text($('job-title'), id);
    $('chart').replaceChildren();
    $('ranks-box').hidden = true;
    text($('chart-legend'), '');
    text($('chart-info'), 'loading');
    const history = `/v1/jobs/${enc(id)}/history`;
    const controller = new AbortController();
    const signal = controller.signal;
    let stopped = false;
    let job = null;
    let g = null;
    let overview = [];      /* the whole run, sampled */
    let overviewEvents = [];
    let detail = null;      /* rows of the range asked last, or null */
    let detailEvents = [];
    let asked = null;       /* [from, to] of the detail */
    let settle = null;
    let rangeSeq = 0;
    let pendingDraw = null;
    let rg = null;          /* the chart of each rank's loss, for a job of several ranks */

    const eventsOf = () => {
      if (!asked) return overviewEvents;
      return overviewEvents.filter((e) => e.step < asked[0] || e.step > asked[1])
        .concat(detailEvents);
    };

    function redraw(options = {}) {
      const rows = merge(overview, detail, asked ? asked[0] : 0, asked ? asked[1] : 0);
      const seen = new Set(eventsOf().map((e) => e.event));
      eventKey(seen);
      if (!rows.length) {
        text($('chart-info'), 'no report yet');
        return;
      }
      if (!g) {
        g = new Dygraph($('chart'), rows, {
          labels: ['step', 'loss', 'lr'],
          xlabel: 'step',
          ylabel: 'loss',
          y2label: 'lr',
          series: { lr: { axis: 'y2' } },
          axes: {
            y: { logscale: $('log').checked },
            y2: { logscale: $('log').checked, independentTicks: true, drawGrid: false },
          },
          colors: ['#1f77b4', '#333333'],
          strokeWidth: 1.2,
          connectSeparatedPoints: true,
          labelsDiv: $('chart-legend'),
          legendFormatter,
          underlayCallback: eventUnderlay(eventsOf),
          zoomCallback: onZoom,
          drawCallback: onDraw,
        });
        probe.chart = g;
      } else {
        g.updateOptions(Object.assign({ file: rows }, options));
      }
      const shown = detail ? detail.length : overview.length;
      text($('chart-info'), `${rows.length} points drawn` +
        (asked ? `, ${shown} in steps ${asked[0]} to ${asked[1]}` : ''));
    }

    function onDraw() {
      probe.drawn++;
      probe.lastDrawAt = performance.now();
      if (!probe.firstDrawAt) probe.firstDrawAt = probe.lastDrawAt;
      if (pendingDraw) {
        const done = pendingDraw;
        pendingDraw = null;
        done();
      }
      if (!g) return;
      /* A pan ends without a zoom callback: ask for the new range once it settles. */
      const [lo, hi] = g.xAxisRange();
      if (g.isZoomed('x') && (!asked || Math.floor(lo) !== asked[0] || Math.ceil(hi) !== asked[1])) {
        clearTimeout(settle);
        settle = setTimeout(() => askRange(lo, hi), RANGE_SETTLE_MS);
      }
    }

    function onZoom(lo, hi) {
      clearTimeout(settle);
      if (!g.isZoomed('x')) {
        detail = null;
        asked = null;
        detailEvents = [];
        redraw();
        loadRanks().catch((e) => { if (e.name !== 'AbortError') showError(e); });
        return;
      }
      askRange(lo, hi);
    }

    /* Asks the history of [lo, hi] with max_points and draws it; resolves once drawn. */
    async function askRange(lo, hi) {
      const from = Math.max(0, Math.floor(lo));
      const to = Math.max(from, Math.ceil(hi));
      const seq = ++rangeSeq;
      asked = [from, to];
      try {
        const h = await get(`${history}?${query({ from_step: from, to_step: to, max_points: MAX_POINTS })}`,
          { signal });
        if (seq !== rangeSeq || stopped) return;
        const got = rowsFromPoints(h.points, h.rewinds);
        detail = got.rows;
        detailEvents = got.events;
        const drawn = new Promise((resolve) => { pendingDraw = resolve; });
        redraw({ dateWindow: [lo, hi] });
        await drawn;
        await loadRanks(lo, hi);
      } catch (e) {
        if (e.name !== 'AbortError') showError(e);
      }
    }

    /*
     * Draws each rank's loss over [lo, hi] (the whole run when not given), when that many
     * steps times ranks fit in one page of the ranks route; else says to zoom in.
     */
    async function loadRanks(lo, hi) {
      if (!job || !(job.world_size > 1)) return;
      $('ranks-box').hidden = false;
      const from = lo === undefined ? 0 : Math.max(0, Math.floor(lo));
      const to = hi === undefined ? Math.max(0, job.last_step || 0) : Math.max(from, Math.ceil(hi));
      const steps = Math.floor(RANKS_MAX_POINTS / job.world_size);
      if (to - from + 1 > steps) {
        text($('ranks-info'), `(zoom in to ${steps} steps or fewer to see them)`);
        if (rg) rg.destroy();
        rg = null;
        probe.ranks = null;
        $('ranks-chart').replaceChildren();
        text($('ranks-legend'), '');
        return;
      }
      const page = await get(`/v1/jobs/${enc(id)}/ranks?${query({
        from_step: from, to_step: to, page_size: RANKS_MAX_POINTS,
      })}`, { signal });
      if (stopped) return;
      const n = Math.min(job.world_size, RANKS_SHOWN);
      const byStep = new Map();
      for (const p of page.points) {
        if (p.rank >= n) continue;
        let row = byStep.get(p.step);
        if (!row) {
          row = new Array(n + 1).fill(null);
          row[0] = p.step;
          byStep.set(p.step, row);
        }
        row[p.rank + 1] = value(p.loss);
      }
      const rows = [...byStep.values()].sort((a, b) => a[0] - b[0]);
      text($('ranks-info'), `(${n} of ${job.world_size} ranks, steps ${from} to ${to})`);
      if (!rows.length) return;
      if (!rg) {
        const labels = ['step'];
        for (let r = 0; r < n; r++) labels.push(`rank ${r}`);
        rg = new Dygraph($('ranks-chart'), rows, {
          labels, xlabel: 'step', ylabel: 'loss', colors: PALETTE.concat(PALETTE).slice(0, n),
          connectSeparatedPoints: true, strokeWidth: 1, logscale: $('log').checked,
          labelsDiv: $('ranks-legend'), legendFormatter,
        });
        probe.ranks = rg;
      } else {
        rg.updateOptions({ file: rows, dateWindow: lo === undefined ? null : [lo, hi] });
      }
    }

    async function zoomTo(lo, hi) {
      if (!g) throw new Error('no chart yet');
      clearTimeout(settle);
      g.updateOptions({ dateWindow: [lo, hi] }, true);
      await askRange(lo, hi);
    }

    async function loadOverview() {
      const h = await get(`${history}?${query({ max_points: MAX_POINTS })}`, { signal });
      const got = rowsFromPoints(h.points, h.rewinds);
      overview = got.rows;
      overviewEvents = got.events;
    }

    /* Reads the steps after the last one drawn, page by page, and adds them. */
    async function catchUp() {
      const last = overview.length ? overview[overview.length - 1][0] : -1;
      let pageToken = null;
      let added = 0;
      do {
        const h = await get(`${history}?${query({
          from_step: last + 1, page_size: FOLLOW_PAGE, page_token: pageToken,
        })}`, { signal });
        const got = rowsFromPoints(h.points, h.rewinds);
        overview = overview.concat(got.rows);
        overviewEvents = overviewEvents.concat(got.events);
        if (detail && asked && got.rows.length) {
          const inside = got.rows.filter((r) => r[0] >= asked[0] && r[0] <= asked[1]);
          detail = detail.concat(inside);
          detailEvents = detailEvents.concat(got.events.filter((e) => e.step >= asked[0] && e.step <= asked[1]));
        }
        added += got.rows.length;
        pageToken = h.next_page_token;
      } while (pageToken && !stopped);
      /* A long run followed for hours: sample the whole again rather than grow without end. */
      if (overview.length > 4 * MAX_POINTS) await loadOverview();
      if (added) {
        redraw();
        job = await get(`/v1/jobs/${enc(id)}`, { signal });
        fillFields(job);
        if (asked) await loadRanks(asked[0], asked[1]); else await loadRanks();
      }
      return added;
    }

    /* Follows a running job: waits on the lr route for the step after the last, then reads it. */
    async function follow() {
      while (!stopped && $('follow').checked && job && job.status === 'running') {
        const last = overview.length ? overview[overview.length - 1][0] : -1;
        try {
          await get(`/v1/jobs/${enc(id)}/lr?${query({ step: last + 1, wait_ms: FOLLOW_WAIT_MS })}`,
            { signal });
          await catchUp();
        } catch (e) {
          if (e.name === 'AbortError' || stopped) return;
          if (e.status === 404 && /not-yet|not-found/.test(e.type)) {
            /* a later step was decided (or this one not yet): read what there is */
            try { await catchUp(); } catch (e2) { if (e2.status === 404) return; }
            continue;
          }
          if (e.status === 409) { /* finished: nothing more will come */
            job = await get(`/v1/jobs/${enc(id)}`, { signal }).catch(() => job);
            if (job) fillFields(job);
            setStatus('finished');
            return;
          }
          showError(e);
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    }

    const onLog = () => {
      const log = $('log').checked;
      if (g) g.updateOptions({ axes: { y: { logscale: log }, y2: { logscale: log } } });
      if (rg) rg.updateOptions({ logscale: log });
    };
    const onFollow = () => { if ($('follow').checked) follow(); };
    const onReset = () => {
      detail = null;
      asked = null;
      detailEvents = [];
      if (g) g.updateOptions({ file: overview, dateWindow: null });
      redraw();
      loadRanks().catch((e) => { if (e.name !== 'AbortError') showError(e); });
    };
    const onCsvAll = async () => {
      try { download(`${id}.csv`, await get(`${history}?format=csv`, { as: 'text' })); } catch (e) { showError(e); }
    };
    const onCsvRange = async () => {
      if (!g) return;
      const [lo, hi] = g.xAxisRange();
      const from = Math.max(0, Math.floor(lo));
      const to = Math.max(from, Math.ceil(hi));
      try {
        download(`${id}-${from}-${to}.csv`,
          await get(`${history}?${query({ format: 'csv', from_step: from, to_step: to })}`, { as: 'text' }));
      } catch (e) { showError(e); }
    };
    const bindings = [
      [$('log'), 'change', onLog], [$('follow'), 'change', onFollow],
      [$('reset-zoom'), 'click', onReset], [$('csv-all'), 'click', onCsvAll],
      [$('csv-range'), 'click', onCsvRange],
    ];
    for (const [el, ev, fn] of bindings) el.addEventListener(ev, fn);

    (async () => {
      try {
        job = await get(`/v1/jobs/${enc(id)}`, { signal });
        fillFields(job);
        await loadOverview();
        if (stopped) return;
        redraw();
        await loadRanks();
        setStatus(job.status === 'running' ? 'following live' : 'finished');
        follow();
      } catch (e) {
        if (e.name === 'AbortError') return;
        text($('chart-info'), '');
        showError(e.status === 404 ? new Error(`No job has the id ${id}.`) : e);
      }
    })();

    return {
      zoomTo,
      stop() {
        stopped = true;
        clearTimeout(settle);
        controller.abort();
        for (const [el, ev, fn] of bindings) el.removeEventListener(ev, fn);
        if (g) g.destroy();
        if (rg) rg.destroy();
        $('chart').replaceChildren();
        $('ranks-chart').replaceChildren();
        $('ranks-box').hidden = true;
      },
    };
  }

  /* ---- compare ---------------------------------------------------------------------------- */

  /* One table of rows by step from several jobs' points: [step, v_1, ..., v_n], nulls where absent. */
  function align(series, pick) {
    const byStep = new Map();
    series.forEach((points, k) => {
      for (const p of points) {
        let row = byStep.get(p.step);
        if (!row) {
          row = new Array(series.length + 1).fill(null);
          row[0] = p.step;
          byStep.set(p.step, row);
        }
        row[k + 1] = pick(p);
      }
    });
    return [...byStep.values()].sort((a, b) => a[0] - b[0]);
  }

  function compareView(params) {
    $('view-compare').hidden = false;
    const controller = new AbortController();
    const signal = controller.signal;
    let stopped = false;
    let charts = null;
    let ids = [];
    let seq = 0;
    $('c-ids').value = params.get('ids') || '';
    $('c-tag').value = params.get('tag') || '';
    $('c-loss').replaceChildren();
    $('c-lr').replaceChildren();

    async function jobIds() {
      const listed = (params.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean);
      const tag = params.get('tag');
      if (tag) {
        const list = await get(`/v1/jobs?${query({ tag, page_size: PAGE_SIZE })}`, { signal });
        for (const j of list.jobs) if (!listed.includes(j.id)) listed.push(j.id);
      }
      return listed.slice(0, PALETTE.length);
    }

    async function load(range) {
      const mine = ++seq;
      const per = Math.max(200, Math.floor(MAX_POINTS / Math.max(1, ids.length)) * 2);
      const extra = range ? { from_step: Math.max(0, Math.floor(range[0])), to_step: Math.ceil(range[1]) } : {};
      const histories = await Promise.all(ids.map((id) => get(
        `/v1/jobs/${enc(id)}/history?${query(Object.assign({ max_points: per }, extra))}`, { signal })));
      if (mine !== seq || stopped) return;
      const points = histories.map((h) => h.points);
      const loss = align(points, (p) => value(p.loss));
      const lr = align(points, (p) => firstLr(p.lr));
      const labels = ['step'].concat(ids);
      const log = $('c-log').checked;
      if (!charts) {
        const common = (legend, ylabel) => ({
          labels, xlabel: 'step', ylabel, colors: PALETTE.slice(0, ids.length),
          connectSeparatedPoints: true, strokeWidth: 1.2, logscale: log,
          labelsDiv: legend, legendFormatter, zoomCallback: onZoom,
        });
        charts = {
          loss: new Dygraph($('c-loss'), loss, common($('c-loss-legend'), 'loss')),
          lr: new Dygraph($('c-lr'), lr, common($('c-lr-legend'), 'lr')),
        };
        probe.compare = charts;
      } else {
        const window = range ? { dateWindow: range } : { dateWindow: null };
        charts.loss.updateOptions(Object.assign({ file: loss }, window));
        charts.lr.updateOptions(Object.assign({ file: lr }, window));
      }
      text($('c-info'), `${ids.length} jobs, aligned by step`);
      $('c-key').replaceChildren(...ids.map((id, k) => keyItem(`c${k}`, id)));
    }

    function onZoom(lo, hi) {
      const zoomed = this.isZoomed('x');
      load(zoomed ? [lo, hi] : null).catch((e) => { if (e.name !== 'AbortError') showError(e); });
    }

    const onSubmit = (e) => {
      e.preventDefault();
      location.hash = `#/compare?${query({ ids: $('c-ids').value.trim(), tag: $('c-tag').value.trim() })}`;
    };
    const onLog = () => {
      if (charts) for (const g of [charts.loss, charts.lr]) g.updateOptions({ logscale: $('c-log').checked });
    };
    const bindings = [[$('compare-form'), 'submit', onSubmit], [$('c-log'), 'change', onLog]];
    for (const [el, ev, fn] of bindings) el.addEventListener(ev, fn);

    (async () => {
      try {
        ids = await jobIds();
        if (!ids.length) {
          text($('c-info'), 'Name jobs (ids, separated by commas) or a tag to compare.');
          return;
        }
        $('c-ids').value = ids.join(',');
        await load(null);
      } catch (e) {
        if (e.name !== 'AbortError') showError(e);
      }
    })();

    return {
      stop() {
        stopped = true;
        controller.abort();
        for (const [el, ev, fn] of bindings) el.removeEventListener(ev, fn);
        if (charts) { charts.loss.destroy(); charts.lr.destroy(); }
      },
    };
  }

  /* ---- start ------------------------------------------------------------------------------ */

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('auth-token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('auth-token').value = '';
    render();
  });
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    render();
  });
  window.addEventListener('hashchange', render);
  /*
   * A page left for another may be kept frozen (the back-forward cache) with its
   * long-poll still open: the browser's few connections to this host would then fill
   * with waits nobody reads. Stop the view when the page is hidden; show it again after.
   */
  window.addEventListener('pagehide', () => {
    if (view) view.stop();
    view = null;
  });
  window.addEventListener('pageshow', (e) => { if (e.persisted) render(); });
  $('forget-token').hidden = !token();
  render();
}());
