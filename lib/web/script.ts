/**
 * The page's script, served as /static/app.js: plain ES2020 with no build step, kept in a module as
 * a string so the functions' bundles carry it (test/unit/web.test.ts checks that it parses).
 *
 * Rules it keeps: every value from the API reaches the DOM through textContent or an attribute set
 * by setAttribute, never innerHTML; every API call carries the session's anti-CSRF token; paths are
 * built from the service root the server put in <meta name="kbatch-root">.
 * (No backticks or dollar-brace in here: this text sits inside a template literal.)
 */
export const appScript = String.raw`
(function () {
  'use strict';

  var root = meta('kbatch-root') || '/';
  var csrf = meta('kbatch-csrf');
  var app = document.getElementById('app');
  /** At most this many log lines stay in the page; older ones are dropped with a notice. */
  var MAX_LOG_LINES = 5000;
  var POLL_MS = 3000;
  var PAGE_SIZE = 25;

  function meta(name) {
    var node = document.querySelector('meta[name="' + name + '"]');
    return node ? node.getAttribute('content') || '' : '';
  }

  /** el('a', {href: x, class: 'y'}, 'text', child...): text children become text nodes. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === undefined || value === null || value === false) return;
        if (key === 'text') node.textContent = String(value);
        else if (key.slice(0, 2) === 'on') node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function jobUrl(name) { return root + 'job/' + encodeURIComponent(name); }
  function apiJob(name) { return 'api/v1/jobs/' + encodeURIComponent(name); }

  // ---------------------------------------------------------------------------------------------
  // API

  function ApiError(status, body) {
    this.status = status;
    this.reason = body && body.reason;
    this.field = body && body.field;
    this.message = (body && body.detail) || ('HTTP ' + status);
  }

  function headers(extra) {
    var h = { accept: 'application/json' };
    if (csrf) h['x-kbatch-csrf'] = csrf;
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }

  function api(method, path, body, signal) {
    var init = { method: method, headers: headers(body ? { 'content-type': 'application/json' } : {}), credentials: 'same-origin', signal: signal };
    if (body) init.body = JSON.stringify(body);
    return fetch(root + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
        if (!response.ok) {
          if (response.status === 401) sessionExpired();
          throw new ApiError(response.status, data);
        }
        return data;
      });
    });
  }

  var expiredShown = false;
  function sessionExpired() {
    if (expiredShown) return;
    expiredShown = true;
    var box = el('div', { class: 'notice error', role: 'alert' }, 'Your session has expired. ',
      el('a', { href: root + 'login?next=' + encodeURIComponent(location.pathname + location.search) }, 'Log in again'));
    app.insertBefore(box, app.firstChild);
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting

  function age(iso, now) {
    if (!iso) return '';
    return duration(Math.max(0, Math.round(((now || Date.now()) - Date.parse(iso)) / 1000))) + ' ago';
  }
  function duration(seconds) {
    if (seconds === undefined || seconds === null) return '';
    if (seconds < 60) return seconds + 's';
    if (seconds < 3600) return Math.floor(seconds / 60) + 'm ' + (seconds % 60) + 's';
    if (seconds < 86400) return Math.floor(seconds / 3600) + 'h ' + Math.floor((seconds % 3600) / 60) + 'm';
    return Math.floor(seconds / 86400) + 'd ' + Math.floor((seconds % 86400) / 3600) + 'h';
  }
  function stateBadge(state) { return el('span', { class: 'state state-' + state, text: state }); }
  function progress(job) {
    var parts = [job.succeeded + '/' + (job.completions || 1) + ' succeeded'];
    if (job.failed) parts.push(job.failed + ' failed');
    if (job.active) parts.push(job.active + ' running');
    return parts.join(' \u00b7 ');
  }
  /** Shows a command's words so they could be typed back: quoted where a shell would split them. */
  function quoteWord(word) { return /^[\w@%+=:,.\/-]+$/.test(word) ? word : "'" + word.replace(/'/g, "'\''") + "'"; }
  function isFinal(state) { return state === 'succeeded' || state === 'failed'; }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ''; }

  function status(node, kind, text) {
    clear(node);
    if (text) append(node, el('p', { class: kind === 'error' ? 'notice error' : kind === 'loading' ? 'state-loading' : 'notice' }, text));
  }

  /** Polls while the tab is visible; stop() ends it (leaving the view). */
  function poller(task, ms) {
    var timer = null, stopped = false;
    function tick() {
      if (stopped) return;
      if (document.hidden) { timer = setTimeout(tick, ms); return; }
      Promise.resolve(task()).catch(function () {}).then(function (again) {
        if (!stopped && again !== false) timer = setTimeout(tick, ms);
      });
    }
    tick();
    return { stop: function () { stopped = true; clearTimeout(timer); } };
  }

  // ---------------------------------------------------------------------------------------------
  // Jobs list

  function jobsView() {
    document.title = 'Jobs \u00b7 kbatch';
    var params = new URLSearchParams(location.search);
    var pageSize = Math.min(500, Math.max(1, parseInt(params.get('limit') || '', 10) || PAGE_SIZE));
    var statusBox = el('div', { role: 'status', 'aria-live': 'polite' });
    var tableHost = el('div');
    var newer = el('button', { type: 'button', class: 'secondary', disabled: true }, 'Newer');
    var older = el('button', { type: 'button', class: 'secondary', disabled: true }, 'Older');
    var pageLabel = el('span', { class: 'muted' });
    clear(app);
    append(app, [
      el('div', { class: 'toolbar' }, el('h1', { text: 'Jobs' }), el('span', { class: 'spacer' }), el('a', { class: 'button', href: root + 'new' }, 'Submit a job')),
      params.get('deleted') ? el('p', { class: 'notice', role: 'status' }, 'Job ' + params.get('deleted') + ' was deleted.') : null,
      statusBox, tableHost,
      el('div', { class: 'toolbar' }, newer, older, pageLabel),
    ]);
    status(statusBox, 'loading', 'Loading jobs\u2026');
    /** Continue tokens of the pages before the current one; the current page's own token. */
    var history = [];
    var current = null;
    var nextToken = null;
    var lastRendered = '';

    function load() {
      var path = 'api/v1/jobs?limit=' + pageSize + (current ? '&continue=' + encodeURIComponent(current) : '');
      return api('GET', path).then(function (page) {
        status(statusBox);
        nextToken = page.continue;
        older.disabled = !nextToken;
        newer.disabled = history.length === 0;
        pageLabel.textContent = 'Page ' + (history.length + 1);
        var signature = JSON.stringify(page.items) + Math.floor(Date.now() / 10000);
        if (signature !== lastRendered) { lastRendered = signature; render(page.items); }
      }, function (error) {
        status(statusBox, 'error', 'Could not load jobs: ' + error.message + ' (retrying)');
      });
    }

    function render(items) {
      clear(tableHost);
      if (!items.length) {
        append(tableHost, el('div', { class: 'empty' }, history.length ? 'No older jobs.' : 'No jobs yet. ', history.length ? null : el('a', { href: root + 'new' }, 'Submit your first job')));
        return;
      }
      var now = Date.now();
      var body = el('tbody');
      items.forEach(function (job) {
        append(body, el('tr', { 'data-job': job.name },
          el('td', { class: 'name', 'data-label': 'Name' }, el('a', { href: jobUrl(job.name) }, job.name)),
          el('td', { 'data-label': 'State' }, stateBadge(job.state)),
          el('td', { 'data-label': 'Progress' }, progress(job)),
          el('td', { class: 'image opt', 'data-label': 'Image' }, job.image || ''),
          el('td', { title: when(job.createdAt), 'data-label': 'Age' }, age(job.createdAt, now)),
          el('td', { class: 'opt', 'data-label': 'Duration' }, duration(job.durationSeconds))));
      });
      append(tableHost, el('div', { class: 'table-wrap' }, el('table', { class: 'cards' },
        el('caption', { text: 'Your jobs, newest first. Updates every few seconds.' }),
        el('thead', null, el('tr', null, ['Name', 'State', 'Progress', 'Image', 'Age', 'Duration'].map(function (h, i) {
          return el('th', { scope: 'col', class: i === 3 || i === 5 ? 'opt' : null }, h);
        }))),
        body)));
    }

    older.addEventListener('click', function () { if (!nextToken) return; history.push(current); current = nextToken; lastRendered = ''; load(); });
    newer.addEventListener('click', function () { if (!history.length) return; current = history.pop(); lastRendered = ''; load(); });
    poller(load, POLL_MS);
  }

  // ---------------------------------------------------------------------------------------------
  // One job

  function jobView(name) {
    document.title = name + ' \u00b7 kbatch';
    var statusBox = el('div', { role: 'status', 'aria-live': 'polite' });
    var summary = el('div');
    var pods = el('div');
    var conditions = el('div');
    var events = el('div');
    var notebook = el('div');
    var outputs = outputsSection(name);
    var deleteButton = el('button', { type: 'button', class: 'danger' }, 'Delete job');
    var podSelect = el('select', { id: 'log-pod' }, el('option', { value: '' }, 'All pods'));
    var download = el('button', { type: 'button', class: 'secondary' }, 'Download log');
    var logNotice = el('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    var logBox = el('div', { class: 'log', id: 'log', tabindex: '0', role: 'log', 'aria-label': 'Log of ' + name, 'aria-live': 'off' });
    var state = null;
    clear(app);
    append(app, [
      el('p', null, el('a', { href: root }, '\u2190 All jobs')),
      el('div', { class: 'toolbar' }, el('h1', { text: name }), el('span', { class: 'spacer' }), deleteButton),
      statusBox, summary,
      el('h2', { text: 'Pods' }), pods,
      notebook,
      outputs.node,
      el('h2', { text: 'Conditions' }), conditions,
      el('h2', { text: 'Events' }), events,
      el('h2', { text: 'Log' }),
      el('div', { class: 'toolbar' }, el('label', { for: 'log-pod' }, 'Pod '), podSelect, download),
      logNotice, logBox,
    ]);
    status(statusBox, 'loading', 'Loading job\u2026');

    var podNames = [];
    function load() {
      return api('GET', apiJob(name)).then(function (job) {
        status(statusBox);
        state = job.state;
        renderSummary(job);
        renderPods(job.pods || []);
        renderConditions(job.conditions || []);
        renderEvents(job);
        renderNotebook(job.notebook);
        var names = (job.pods || []).map(function (p) { return p.name; });
        if (names.join() !== podNames.join()) {
          podNames = names;
          var chosen = podSelect.value;
          while (podSelect.options.length > 1) podSelect.remove(1);
          names.forEach(function (n) { append(podSelect, el('option', { value: n }, n)); });
          podSelect.value = names.indexOf(chosen) >= 0 ? chosen : '';
        }
        // Outputs are listed once, then again when the job ends (a listing is an exec into the volume, not free).
        if (!outputs.loaded || (isFinal(job.state) && !outputs.final)) outputs.load(isFinal(job.state));
        // A finished job changes no more: one last look, then stop polling.
        return !isFinal(job.state);
      }, function (error) {
        if (error.status === 404) { status(statusBox, 'error', 'This job no longer exists.'); return false; }
        status(statusBox, 'error', 'Could not load the job: ' + error.message + ' (retrying)');
      });
    }

    function renderSummary(job) {
      clear(summary);
      var command = (job.command || []).concat(job.args || []).map(quoteWord).join(' ');
      var labels = Object.keys(job.labels || {}).filter(function (k) { return k.indexOf('kbatch.jupyter.org/') !== 0 && k.indexOf('batch.kubernetes.io/') !== 0 && k !== 'controller-uid' && k !== 'job-name'; })
        .map(function (k) { return k + '=' + job.labels[k]; }).join(', ');
      var facts = [
        ['State', stateBadge(job.state)],
        ['Progress', progress(job)],
        ['Image', job.image || ''],
        ['Command', command],
        ['Submitted', when(job.createdAt) + ' (' + age(job.createdAt) + ')'],
        ['Started', when(job.startedAt)],
        ['Finished', when(job.finishedAt)],
        ['Duration', duration(job.durationSeconds)],
        ['Labels', labels],
      ];
      append(summary, el('dl', { class: 'facts' }, facts.filter(function (f) { return f[1] !== ''; }).map(function (f) {
        return [el('dt', { text: f[0] }), el('dd', null, f[1])];
      })));
    }

    function renderPods(list) {
      clear(pods);
      if (!list.length) { append(pods, el('p', { class: 'empty' }, isFinal(state) ? 'No pods are left.' : 'No pods yet: the job is waiting to be scheduled.')); return; }
      var body = el('tbody');
      list.forEach(function (pod) {
        var containers = (pod.containers || []).map(function (c) {
          var text = c.name + ': ' + c.state + (c.reason ? ' (' + c.reason + ')' : '') + (c.exitCode !== undefined ? ', exit code ' + c.exitCode : '');
          return el('div', null, text, c.message ? el('div', { class: 'muted' }, c.message) : null);
        });
        // A pod with no container status yet has not been placed on a node (or is pulling its first image).
        if (!containers.length && pod.phase === 'Pending') containers = [el('div', { class: 'muted' }, pod.node ? 'starting on ' + pod.node + '\u2026' : 'waiting to be scheduled on a node')];
        append(body, el('tr', null,
          el('td', { class: 'name', 'data-label': 'Pod' }, pod.name),
          el('td', { 'data-label': 'Index' }, pod.completionIndex === undefined ? '\u2013' : pod.completionIndex),
          el('td', { 'data-label': 'Phase' }, pod.phase),
          el('td', { 'data-label': 'Containers' }, el('div', null, containers)),
          el('td', { class: 'opt', 'data-label': 'Node' }, pod.node || ''),
          el('td', { class: 'opt', title: when(pod.startedAt), 'data-label': 'Started' }, age(pod.startedAt))));
      });
      append(pods, el('div', { class: 'table-wrap' }, el('table', { class: 'cards' },
        el('thead', null, el('tr', null, ['Pod', 'Index', 'Phase', 'Containers', 'Node', 'Started'].map(function (h, i) {
          return el('th', { scope: 'col', class: i >= 4 ? 'opt' : null }, h);
        }))), body)));
    }

    function renderConditions(list) {
      clear(conditions);
      if (!list.length) { append(conditions, el('p', { class: 'muted' }, 'None yet.')); return; }
      var body = el('tbody');
      list.forEach(function (c) {
        append(body, el('tr', null, el('td', null, c.type), el('td', null, c.status), el('td', null, c.reason || ''), el('td', null, c.message || ''), el('td', { class: 'opt' }, when(c.lastTransitionTime))));
      });
      append(conditions, el('div', { class: 'table-wrap' }, el('table', null,
        el('thead', null, el('tr', null, ['Type', 'Status', 'Reason', 'Message', 'Since'].map(function (h, i) { return el('th', { scope: 'col', class: i === 4 ? 'opt' : null }, h); }))), body)));
    }

    // Why a job waits: the newest warning (FailedScheduling, ErrImagePull...) says it in one line.
    function renderEvents(job) {
      clear(events);
      var list = job.events || [];
      var warning = list.filter(function (e) { return e.type === 'Warning'; }).slice(-1)[0];
      if (job.state === 'pending' && warning) {
        append(events, el('p', { class: 'why', role: 'note' }, 'Why pending: ' + warning.reason + ': ' + warning.message));
      }
      if (!list.length) { append(events, el('p', { class: 'muted' }, 'No events.')); return; }
      var body = el('tbody');
      list.slice(-50).forEach(function (e) {
        append(body, el('tr', null, el('td', null, e.type), el('td', null, e.reason), el('td', { class: 'opt' }, e.object), el('td', null, e.message), el('td', { class: 'opt' }, String(e.count)), el('td', { class: 'opt' }, when(e.lastSeen))));
      });
      append(events, el('div', { class: 'table-wrap' }, el('table', null,
        el('thead', null, el('tr', null, ['Type', 'Reason', 'Object', 'Message', 'Count', 'Last seen'].map(function (h, i) { return el('th', { scope: 'col', class: i === 2 || i >= 4 ? 'opt' : null }, h); }))), body)));
    }

    // A notebook run: its parameters, one row per index for a sweep.
    function renderNotebook(run) {
      clear(notebook);
      if (!run) return;
      append(notebook, el('h2', { text: 'Notebook' }), el('p', null, el('code', null, run.notebook)));
      var body = el('tbody');
      (run.runs || []).slice(0, 200).forEach(function (r) {
        append(body, el('tr', null, el('td', null, r.index === undefined ? '\u2013' : String(r.index)), el('td', null, el('code', null, JSON.stringify(r.parameters))), el('td', { class: 'opt' }, r.output)));
      });
      append(notebook, el('div', { class: 'table-wrap' }, el('table', null,
        el('thead', null, el('tr', null, ['Index', 'Parameters', 'Executed notebook'].map(function (h, i) { return el('th', { scope: 'col', class: i === 2 ? 'opt' : null }, h); }))), body)));
    }

    // Asked when a stream ends cleanly: the poll's last answer may predate the pod finishing.
    var log = logFollower(name, logBox, logNotice, function () {
      return api('GET', apiJob(name)).then(function (job) { state = job.state; return isFinal(job.state); }, function () { return isFinal(state); });
    });
    podSelect.addEventListener('change', function () { log.start(podSelect.value); });
    download.addEventListener('click', function () { downloadLog(name, podSelect.value, logNotice); });
    deleteButton.addEventListener('click', function () { confirmDelete(name, deleteButton, statusBox, log); });
    poller(load, POLL_MS);
    log.start('');
  }

  function confirmDelete(name, button, statusBox, log) {
    var cancel = el('button', { type: 'button', class: 'secondary', value: 'cancel' }, 'Cancel');
    var confirmButton = el('button', { type: 'button', class: 'danger', value: 'delete' }, 'Delete');
    var withOutputs = el('input', { type: 'checkbox', id: 'delete-outputs' });
    var dialog = el('dialog', { 'aria-labelledby': 'delete-title' },
      el('h2', { id: 'delete-title' }, 'Delete job ' + name + '?'),
      el('p', null, 'Its pods, logs and uploaded code are removed. This cannot be undone.'),
      el('p', { class: 'check' }, withOutputs, el('label', { for: 'delete-outputs' }, ' Also delete its outputs (otherwise they stay, and can still be downloaded)')),
      el('div', { class: 'toolbar' }, cancel, confirmButton));
    document.body.appendChild(dialog);
    function close() { dialog.close(); dialog.remove(); button.focus(); }
    cancel.addEventListener('click', close);
    dialog.addEventListener('cancel', function () { dialog.remove(); });
    confirmButton.addEventListener('click', function () {
      confirmButton.disabled = true;
      api('DELETE', apiJob(name) + (withOutputs.checked ? '?outputs=true' : '')).then(function () {
        log.stop();
        location.href = root + '?deleted=' + encodeURIComponent(name);
      }, function (error) {
        close();
        status(statusBox, 'error', 'Could not delete the job: ' + error.message);
      });
    });
    dialog.showModal();
    cancel.focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Outputs: what the job wrote under $KBATCH_OUTPUTS_DIR, kept after the job is gone

  /** Above this, the page suggests the CLI: a browser download cannot resume (and may be held in memory). */
  var LARGE_OUTPUTS = 1024 * 1024 * 1024;
  /** Above this, a download is written to a file as it comes where the browser can (not collected in memory). */
  var STREAM_TO_FILE = 64 * 1024 * 1024;

  function outputsSection(name) {
    var base = apiJob(name) + '/outputs';
    var list = el('div', { id: 'outputs' });
    var summary = el('p', { class: 'muted', id: 'outputs-summary' });
    var notice = el('p', { class: 'muted', role: 'status', 'aria-live': 'polite', id: 'outputs-status' });
    var refresh = el('button', { type: 'button', class: 'secondary' }, 'Refresh');
    var all = el('button', { type: 'button', id: 'outputs-all', hidden: true }, 'Download all (.tar.gz)');
    var section = {
      node: el('section', { 'aria-labelledby': 'outputs-title' },
        el('div', { class: 'toolbar heading' }, el('h2', { id: 'outputs-title', text: 'Outputs' }), el('span', { class: 'spacer' }), all, refresh),
        summary, list, notice),
      loaded: false,
      final: false,
      load: load,
    };
    var busy = false;

    function load(final) {
      section.loaded = true;
      if (final) section.final = true;
      return api('GET', base).then(render, function (error) {
        if (error.status === 404) { render({ files: [], totalBytes: 0 }); return; }
        notice.textContent = 'Could not list the outputs: ' + error.message;
      });
    }

    function render(result) {
      clear(list);
      var files = result.files || [];
      all.hidden = !files.length;
      if (!files.length) {
        summary.textContent = '';
        append(list, el('p', { class: 'empty' }, 'No outputs yet. Files the job writes under $KBATCH_OUTPUTS_DIR (/outputs) appear here, and stay after the job is deleted.'));
        return;
      }
      summary.textContent = files.length + ' file' + (files.length > 1 ? 's' : '') + ', ' + formatBytes(result.totalBytes) + '.' +
        (result.totalBytes > LARGE_OUTPUTS ? ' That is a lot for a browser download: kbatch job outputs ' + name + ' downloads it resumably.' : '');
      var body = el('tbody');
      files.forEach(function (file) {
        var button = el('button', { type: 'button', class: 'secondary', 'aria-label': 'Download ' + file.path }, 'Download');
        button.addEventListener('click', function () {
          fetchAndSave(base + '/file?path=' + encodeURIComponent(file.path), file.path.split('/').pop(), file.path, file.size, file.size);
        });
        append(body, el('tr', { 'data-path': file.path },
          el('td', { class: 'name', 'data-label': 'Path' }, file.path),
          el('td', { 'data-label': 'Size' }, formatBytes(file.size)),
          el('td', { class: 'opt', 'data-label': 'Modified', title: file.modified }, when(file.modified)),
          el('td', { 'data-label': '' }, button)));
      });
      append(list, el('div', { class: 'table-wrap' }, el('table', { class: 'cards' },
        el('thead', null, el('tr', null, ['Path', 'Size', 'Modified', ''].map(function (h, i) {
          return el('th', { scope: 'col', class: i === 2 ? 'opt' : null }, h);
        }))),
        body)));
      // The archive's length is not known ahead (it is compressed as it streams); the files' total bounds it.
      all.onclick = function () { fetchAndSave(base + '/archive', name + '-outputs.tar.gz', 'all outputs', undefined, result.totalBytes); };
    }

    /**
     * The session's cookie authorizes API calls only with the anti-CSRF header, which a plain link
     * cannot send: the bytes come through fetch, with a progress line. A large download goes
     * straight into a file where the browser can write one as the bytes come (the File System
     * Access API: Chromium); anything else is collected into a blob and saved from it.
     */
    function fetchAndSave(path, filename, what, size, bytesToCome) {
      if (busy) return;
      // Asked first, inside the click: the picker needs the user's gesture.
      var target = bytesToCome > STREAM_TO_FILE && typeof window.showSaveFilePicker === 'function'
        ? window.showSaveFilePicker({ suggestedName: filename }).then(function (handle) { return handle.createWritable(); })
        : Promise.resolve(null);
      busy = true;
      var received = 0;
      target.then(function (file) {
        notice.textContent = 'Downloading ' + what + '\u2026';
        return fetch(root + path, { headers: headers({ accept: '*/*' }), credentials: 'same-origin' }).then(function (response) {
          if (!response.ok) return response.json().catch(function () { return {}; }).then(function (body) { throw new ApiError(response.status, body); });
          var total = Number(response.headers.get('content-length')) || size;
          var reader = response.body.getReader();
          var parts = [];
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) return file ? file.close().then(function () { return null; }) : new Blob(parts);
              received += chunk.value.length;
              notice.textContent = 'Downloading ' + what + ': ' + formatBytes(received) + (total ? ' of ' + formatBytes(total) : '');
              if (file) return file.write(chunk.value).then(pump);
              parts.push(chunk.value);
              return pump();
            });
          }
          return pump();
        }).then(function (blob) {
          if (blob) saveBlob(blob, filename);
          notice.textContent = 'Downloaded ' + what + ' (' + formatBytes(received) + ').';
        }, function (error) {
          if (file) file.abort().catch(function () {});
          throw error;
        });
      }).then(null, function (error) {
        // Cancelling the file picker is not a failure.
        notice.textContent = error && error.name === 'AbortError' ? '' : 'Could not download ' + what + ': ' + error.message;
      }).then(function () { busy = false; });
    }

    function saveBlob(blob, filename) {
      var url = URL.createObjectURL(blob);
      var link = el('a', { href: url, download: filename });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }

    refresh.addEventListener('click', function () { load(section.final); });
    return section;
  }

  function downloadLog(name, pod, notice) {
    var path = apiJob(name) + '/logs' + (pod ? '?pod=' + encodeURIComponent(pod) : '');
    fetch(root + path, { headers: headers(), credentials: 'same-origin' }).then(function (response) {
      if (!response.ok) return response.json().catch(function () { return {}; }).then(function (body) { throw new ApiError(response.status, body); });
      return response.blob();
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var link = el('a', { href: url, download: (pod || name) + '.log' });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }, function (error) { notice.textContent = 'Could not download the log: ' + error.message; });
  }

  // ---------------------------------------------------------------------------------------------
  // Log following: live, resumable, bounded

  var timestamped = /^(\[[^\]\s]+\] )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))(?: |$)([\s\S]*)$/;
  var abortMarker = /^\[kbatch\] stream aborted/;

  function nanos(stamp) {
    var m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(stamp);
    if (!m) return null;
    var millis = Date.parse(m[1] + m[3]);
    if (isNaN(millis)) return null;
    return BigInt(millis) * 1000000n + BigInt(((m[2] || '') + '000000000').slice(0, 9));
  }

  /** The CLI's LogCursor (cli/logs.ts): per pod, the last time seen and how many lines had it. */
  function LogCursor() { this.last = new Map(); this.replay = new Map(); }
  LogCursor.prototype.beginReplay = function () {
    var replay = new Map();
    this.last.forEach(function (seen, prefix) { replay.set(prefix, { nanos: seen.nanos, skip: seen.count }); });
    this.replay = replay;
  };
  LogCursor.prototype.accept = function (prefix, n) {
    var replay = this.replay.get(prefix);
    if (replay) {
      if (n < replay.nanos) return false;
      if (n === replay.nanos && replay.skip > 0) { replay.skip--; return false; }
      this.replay.delete(prefix);
    }
    var seen = this.last.get(prefix);
    if (seen && seen.nanos === n) seen.count++;
    else this.last.set(prefix, { nanos: n, count: 1 });
    return true;
  };
  LogCursor.prototype.resumeSince = function () {
    var oldest = null;
    this.last.forEach(function (seen) { if (oldest === null || seen.nanos < oldest) oldest = seen.nanos; });
    return oldest === null ? null : new Date(Number(oldest / 1000000n) - 1000).toISOString();
  };

  function logFollower(name, box, notice, jobFinished) {
    var controller = null, generation = 0, pending = [], shown = 0, dropped = 0, scheduled = false;

    function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }

    /** Lines are batched into one DOM update per frame; beyond MAX_LOG_LINES the oldest go. */
    function queue(text, cls) {
      pending.push([text, cls]);
      if (pending.length > MAX_LOG_LINES) { dropped += pending.length - MAX_LOG_LINES; pending.splice(0, pending.length - MAX_LOG_LINES); }
      if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
    }
    function flush() {
      scheduled = false;
      var follow = atBottom();
      var fragment = document.createDocumentFragment();
      pending.forEach(function (item) {
        var line = document.createElement('div');
        line.className = item[1] ? 'line ' + item[1] : 'line';
        line.textContent = item[0];
        fragment.appendChild(line);
      });
      shown += pending.length;
      pending = [];
      box.appendChild(fragment);
      while (shown > MAX_LOG_LINES) { box.removeChild(box.firstChild); shown--; dropped++; }
      if (dropped) notice.textContent = 'Showing the last ' + MAX_LOG_LINES.toLocaleString() + ' lines; ' + dropped.toLocaleString() + ' earlier lines are not shown. Download the log for all of it.';
      if (follow) box.scrollTop = box.scrollHeight;
    }

    function stop() { generation++; if (controller) controller.abort(); controller = null; }

    function start(pod) {
      stop();
      var mine = generation;
      clear(box); pending = []; shown = 0; dropped = 0; notice.textContent = '';
      var cursor = new LogCursor();
      var failures = 0;
      var prefixWanted = !pod;

      function attempt(resumed) {
        if (mine !== generation) return;
        if (resumed) cursor.beginReplay();
        controller = new AbortController();
        var since = resumed ? cursor.resumeSince() : null;
        var path = apiJob(name) + '/logs?follow=true&timestamps=true' + (pod ? '&pod=' + encodeURIComponent(pod) : '') + (since ? '&since=' + encodeURIComponent(since) : '');
        var abortedBy = null;
        fetch(root + path, { headers: headers(), credentials: 'same-origin', signal: controller.signal }).then(function (response) {
          if (!response.ok) return response.json().catch(function () { return {}; }).then(function (body) { throw new ApiError(response.status, body); });
          if (mine === generation && !resumed) notice.textContent = 'Following the log live.';
          var reader = response.body.getReader();
          var decoder = new TextDecoder();
          var carry = '';
          function handle(line) {
            if (abortMarker.test(line)) { abortedBy = line; return; }
            var m = timestamped.exec(line);
            var n = m ? nanos(m[2]) : null;
            if (!m || n === null) { if (line) queue(line); return; }
            if (!cursor.accept(m[1] || '', n)) return;
            failures = 0;
            queue((prefixWanted ? m[1] || '' : '') + m[3]);
          }
          function pump() {
            return reader.read().then(function (chunk) {
              if (mine !== generation) return reader.cancel();
              if (chunk.done) { carry += decoder.decode(); if (carry && !abortedBy) handle(carry); return; }
              var parts = (carry + decoder.decode(chunk.value, { stream: true })).split('\n');
              carry = parts.pop();
              for (var i = 0; i < parts.length && !abortedBy; i++) handle(parts[i]);
              if (abortedBy) return reader.cancel();
              return pump();
            });
          }
          return pump();
        }).then(function () {
          if (mine !== generation) return;
          if (abortedBy) return retry(abortedBy);
          // A clean end of one pod's stream means it finished; for the whole job, make sure it is over.
          return (pod ? Promise.resolve(true) : jobFinished()).then(function (finished) {
            if (mine !== generation) return;
            if (!finished) return retry('the stream ended while the job is still running');
            queue('\u2014 end of log \u2014', 'meta');
            if (!dropped) notice.textContent = '';
          });
        }, function (error) {
          if (mine !== generation || (error && error.name === 'AbortError')) return;
          if (error instanceof ApiError && error.status < 500) {
            notice.textContent = 'Cannot show the log: ' + error.message;
            return;
          }
          retry(error && error.message || 'connection lost');
        });
      }
      function later(ms) { setTimeout(function () { attempt(cursor.last.size > 0); }, ms); }
      function retry(reason) {
        failures++;
        if (failures > 8) { notice.textContent = 'Lost the log stream (' + reason + '). Reload to try again.'; return; }
        notice.textContent = 'Reconnecting (' + reason + ')\u2026';
        later(Math.min(5000, 250 * Math.pow(2, failures - 1)));
      }
      attempt(false);
    }
    window.addEventListener('pagehide', stop);
    return { start: start, stop: stop };
  }

  // ---------------------------------------------------------------------------------------------
  // Submit

  /** Splits a command line like a POSIX shell would for words and quotes (no variables or globs). */
  function shellWords(text) {
    var words = [], word = '', inWord = false, quote = null;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (quote) {
        if (c === quote) quote = null;
        else if (c === '\\' && quote === '"' && i + 1 < text.length && '"\\$'.indexOf(text[i + 1]) >= 0) word += text[++i];
        else word += c;
      } else if (c === '"' || c === "'") { quote = c; inWord = true; }
      else if (c === '\\' && i + 1 < text.length) { word += text[++i]; inWord = true; }
      else if (/\s/.test(c)) { if (inWord) { words.push(word); word = ''; inWord = false; } }
      else { word += c; inWord = true; }
    }
    if (quote) throw new Error('an opening ' + quote + ' has no closing one');
    if (inWord) words.push(word);
    return words;
  }

  function field(id, label, input, hint) {
    input.setAttribute('id', id);
    var hintId = hint ? id + '-hint' : null;
    var errorId = id + '-error';
    input.setAttribute('aria-describedby', (hintId ? hintId + ' ' : '') + errorId);
    return el('div', { class: 'field', 'data-field': id },
      el('label', { for: id }, label), input,
      hint ? el('span', { class: 'hint', id: hintId }, hint) : null,
      el('span', { class: 'field-error', id: errorId, role: 'alert' }));
  }

  function newJobView() {
    document.title = 'Submit a job \u00b7 kbatch';
    var files = [];
    var name = el('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
    var image = el('input', { type: 'text', name: 'image', autocomplete: 'off', spellcheck: 'false', placeholder: 'python:3.12-slim' });
    var profile = el('select', { name: 'profile' }, el('option', { value: '' }, '(none)'));
    var command = el('input', { type: 'text', name: 'command', autocomplete: 'off', spellcheck: 'false', placeholder: 'python main.py' });
    var env = el('textarea', { name: 'env', rows: '3', spellcheck: 'false', placeholder: 'KEY=value' });
    var cpuReq = el('input', { type: 'text', name: 'cpu', placeholder: '500m' });
    var memReq = el('input', { type: 'text', name: 'memory', placeholder: '512Mi' });
    var cpuLim = el('input', { type: 'text', name: 'cpu-limit', placeholder: '1' });
    var memLim = el('input', { type: 'text', name: 'memory-limit', placeholder: '1Gi' });
    var completions = el('input', { type: 'number', name: 'completions', min: '1', max: '10000', value: '1' });
    var folderInput = el('input', { type: 'file', id: 'code-folder', webkitdirectory: true, multiple: true });
    var fileInput = el('input', { type: 'file', id: 'code-files', multiple: true });
    var codeSummary = el('p', { id: 'code-summary', class: 'muted', 'aria-live': 'polite' }, 'No code chosen: the job runs the image as it is.');
    var clearCode = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Remove code');
    var drop = el('div', { class: 'drop', id: 'code-drop' }, 'Drop a folder or files here, or choose: ',
      el('label', { for: 'code-folder' }, 'a folder '), folderInput, el('label', { for: 'code-files' }, ' or files '), fileInput);
    var codeError = el('span', { class: 'field-error', id: 'code-error', role: 'alert' });
    var submit = el('button', { type: 'submit' }, 'Submit');
    var bar = el('progress', { max: '100', value: '0', hidden: true, 'aria-label': 'Upload progress' });
    var formStatus = el('div', { role: 'status', 'aria-live': 'polite' });

    var form = el('form', { class: 'submit', novalidate: true },
      field('name', 'Name', name, 'Lower-case letters, digits and dashes; a random suffix is added.'),
      el('div', { class: 'grid2' },
        field('image', 'Image', image, 'Or leave empty and pick a profile.'),
        field('profile', 'Profile', profile, 'Image and resources chosen by your admin.')),
      field('command', 'Command', command, 'Split into words like a shell does: quotes group words.'),
      field('env', 'Environment', env, 'One KEY=value per line. Stored in a Secret, not in the job.'),
      el('fieldset', { 'data-field': 'resources' }, el('legend', null, 'Resources (optional)'),
        el('div', { class: 'grid2' }, field('cpu', 'CPU request', cpuReq), field('memory', 'Memory request', memReq), field('cpu-limit', 'CPU limit', cpuLim), field('memory-limit', 'Memory limit', memLim)),
        el('span', { class: 'field-error', id: 'resources-error', role: 'alert' })),
      field('completions', 'Array size', completions, 'More than 1 runs that many tasks, each with JOB_COMPLETION_INDEX.'),
      el('fieldset', { 'data-field': 'code' }, el('legend', null, 'Code (optional, mounted at /code)'), drop, codeSummary, clearCode, codeError),
      el('div', { class: 'toolbar' }, submit, el('a', { href: root, class: 'button secondary' }, 'Cancel')),
      bar, formStatus);
    clear(app);
    append(app, [el('h1', { text: 'Submit a job' }), form]);
    name.focus();

    api('GET', 'profiles').then(function (profiles) {
      Object.keys(profiles || {}).forEach(function (key) {
        var description = profiles[key] && profiles[key].description;
        append(profile, el('option', { value: key }, key + (description ? ' \u2014 ' + description : '')));
      });
    }, function () {});

    function setFiles(list) {
      files = list;
      var bytes = files.reduce(function (n, f) { return n + f.file.size; }, 0);
      codeSummary.textContent = files.length ? files.length + ' file' + (files.length > 1 ? 's' : '') + ' (' + formatBytes(bytes) + '): ' + files.slice(0, 5).map(function (f) { return f.path; }).join(', ') + (files.length > 5 ? ', \u2026' : '') : 'No code chosen: the job runs the image as it is.';
      clearCode.hidden = !files.length;
    }
    /** A chosen folder's files keep their paths inside it, as the CLI uploads them. */
    function insideFolder(path) { var slash = path.indexOf('/'); return slash >= 0 ? path.slice(slash + 1) : path; }
    folderInput.addEventListener('change', function () {
      setFiles(Array.prototype.map.call(folderInput.files, function (f) { return { path: insideFolder(f.webkitRelativePath || f.name), file: f }; }));
    });
    fileInput.addEventListener('change', function () {
      setFiles(Array.prototype.map.call(fileInput.files, function (f) { return { path: f.name, file: f }; }));
    });
    clearCode.addEventListener('click', function () { folderInput.value = ''; fileInput.value = ''; setFiles([]); });
    drop.addEventListener('dragover', function (event) { event.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', function () { drop.classList.remove('over'); });
    drop.addEventListener('drop', function (event) {
      event.preventDefault();
      drop.classList.remove('over');
      var items = Array.prototype.slice.call(event.dataTransfer.items || []);
      var entries = items.map(function (item) { return item.webkitGetAsEntry && item.webkitGetAsEntry(); }).filter(Boolean);
      // One dropped folder: its contents go to /code, like choosing the folder. Anything else keeps its names.
      var single = entries.length === 1 && entries[0].isDirectory;
      // Without the entries API (or for plain files) the drop's file list is all there is.
      if (!entries.length) { setFiles(Array.prototype.map.call(event.dataTransfer.files || [], function (f) { return { path: f.name, file: f }; })); return; }
      Promise.all(entries.map(function (entry) { return walk(entry, single ? '' : entry.isDirectory ? entry.name + '/' : ''); })).then(function (lists) {
        setFiles([].concat.apply([], lists));
      }, function (error) { codeError.textContent = 'Could not read the dropped files: ' + error.message; });
    });

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      clearErrors();
      var spec;
      try { spec = buildSpec(); } catch (error) { showError(error.field || 'form', error.message); return; }
      submit.disabled = true;
      send(spec);
    });

    function buildSpec() {
      var spec = { name: name.value.trim() };
      if (!spec.name) throw fieldError('name', 'A name is required.');
      if (image.value.trim()) spec.image = image.value.trim();
      if (profile.value) spec.profile = profile.value;
      if (command.value.trim()) {
        try { spec.command = shellWords(command.value); } catch (error) { throw fieldError('command', 'Cannot split the command: ' + error.message + '.'); }
      }
      var envLines = env.value.split('\n').map(function (l) { return l.trim(); }).filter(Boolean);
      if (envLines.length) {
        spec.env = {};
        envLines.forEach(function (line) {
          var eq = line.indexOf('=');
          if (eq <= 0) throw fieldError('env', 'Each line must be KEY=value: ' + line);
          spec.env[line.slice(0, eq).trim()] = line.slice(eq + 1);
        });
      }
      var requests = {}, limits = {};
      if (cpuReq.value.trim()) requests.cpu = cpuReq.value.trim();
      if (memReq.value.trim()) requests.memory = memReq.value.trim();
      if (cpuLim.value.trim()) limits.cpu = cpuLim.value.trim();
      if (memLim.value.trim()) limits.memory = memLim.value.trim();
      if (Object.keys(requests).length || Object.keys(limits).length) {
        spec.resources = {};
        if (Object.keys(requests).length) spec.resources.requests = requests;
        if (Object.keys(limits).length) spec.resources.limits = limits;
      }
      var size = Number(completions.value || '1');
      if (!Number.isInteger(size) || size < 1) throw fieldError('completions', 'The array size must be a whole number of at least 1.');
      if (size > 1) spec.completions = size;
      return spec;
    }

    /** Multipart when there is code (one part per file, named by its path), so the upload shows progress. */
    function send(spec) {
      var xhr = new XMLHttpRequest();
      xhr.open('POST', root + 'api/v1/jobs');
      xhr.setRequestHeader('accept', 'application/json');
      if (csrf) xhr.setRequestHeader('x-kbatch-csrf', csrf);
      var body;
      if (files.length) {
        body = new FormData();
        body.append('spec', JSON.stringify(spec));
        files.forEach(function (f) { body.append('file', f.file, f.path); });
        bar.hidden = false;
        bar.value = 0;
        xhr.upload.addEventListener('progress', function (event) {
          if (!event.lengthComputable) return;
          bar.value = Math.round((event.loaded / event.total) * 100);
          formStatus.textContent = 'Uploading code: ' + bar.value + '%';
        });
        xhr.upload.addEventListener('load', function () { formStatus.textContent = 'Uploaded; creating the job\u2026'; });
      } else {
        xhr.setRequestHeader('content-type', 'application/json');
        body = JSON.stringify(spec);
        formStatus.textContent = 'Submitting\u2026';
      }
      xhr.addEventListener('load', function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = { detail: xhr.responseText }; }
        if (xhr.status === 201 && data && data.name) { location.href = jobUrl(data.name); return; }
        submit.disabled = false;
        bar.hidden = true;
        formStatus.textContent = '';
        if (xhr.status === 401) sessionExpired();
        showError(fieldFor(data && data.field), (data && data.detail) || ('HTTP ' + xhr.status));
      });
      xhr.addEventListener('error', function () {
        submit.disabled = false;
        bar.hidden = true;
        showError('form', 'The connection broke before the server answered; nothing may have been submitted. Check the jobs list, then try again.');
      });
      xhr.send(body);
    }

    /** The API names fields like env.KEY or resources.limits.cpu; show the message at the input that holds them. */
    function fieldFor(apiField) {
      if (!apiField) return 'form';
      var top = String(apiField).split(/[.[]/)[0];
      if (top === 'resources') {
        var m = /^resources\.(requests|limits)\.(cpu|memory)$/.exec(apiField);
        if (m) return (m[2]) + (m[1] === 'limits' ? '-limit' : '');
        return 'resources';
      }
      if (top === 'upload' || top === 'file') return 'code';
      if (top === 'parallelism') return 'completions';
      if (top === 'args') return 'command';
      return form.querySelector('[data-field="' + top + '"]') ? top : 'form';
    }
    function fieldError(f, message) { var error = new Error(message); error.field = f; return error; }
    function clearErrors() {
      Array.prototype.forEach.call(form.querySelectorAll('.field-error'), function (n) { n.textContent = ''; });
      Array.prototype.forEach.call(form.querySelectorAll('[aria-invalid]'), function (n) { n.removeAttribute('aria-invalid'); });
      clear(formStatus);
    }
    function showError(f, message) {
      var target = f !== 'form' && document.getElementById(f + '-error');
      if (!target) { status(formStatus, 'error', message); return; }
      target.textContent = message;
      var input = document.getElementById(f);
      if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    }
  }

  /** Every file under a dropped directory entry, with its path below the drop. */
  function walk(entry, prefix) {
    if (entry.isFile) return new Promise(function (resolve, reject) { entry.file(function (file) { resolve([{ path: prefix + file.name, file: file }]); }, reject); });
    var reader = entry.createReader();
    var all = [];
    return new Promise(function (resolve, reject) {
      (function more() {
        // readEntries answers in batches of up to 100 until an empty one.
        reader.readEntries(function (batch) {
          if (!batch.length) { resolve(all); return; }
          all = all.concat(batch);
          more();
        }, reject);
      })();
    }).then(function (children) {
      return Promise.all(children.map(function (child) { return walk(child, prefix + (child.isDirectory ? child.name + '/' : '')); }));
    }).then(function (lists) { return [].concat.apply([], lists); });
  }
  function formatBytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
    return (n / 1073741824).toFixed(1) + ' GiB';
  }

  // ---------------------------------------------------------------------------------------------

  var view = app.getAttribute('data-view');
  if (view === 'job') jobView(app.getAttribute('data-job'));
  else if (view === 'new') newJobView();
  else jobsView();
})();
`;
