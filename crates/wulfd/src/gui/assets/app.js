// The wulf web page: log in, the status summary, the node table and a node's page. All data
// comes from the head's API (/api/v1) with the access token of the login, kept in
// sessionStorage (gone when the tab closes).

import { expand, compress, HostlistError } from './hostlist.js';
import { VirtualTable } from './table.js';

const API = '/api/v1';
const ROLES = ['viewer', 'operator', 'admin'];
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// Session and API calls

const session = {
  get access() { return sessionStorage.getItem('wulf.access'); },
  get refresh() { return sessionStorage.getItem('wulf.refresh'); },
  get expires() { return Number(sessionStorage.getItem('wulf.access_expires') || 0); },
  save(t) {
    sessionStorage.setItem('wulf.access', t.access_token);
    sessionStorage.setItem('wulf.access_expires', String(t.access_expires));
    if (t.refresh_token) sessionStorage.setItem('wulf.refresh', t.refresh_token);
  },
  clear() {
    for (const k of ['wulf.access', 'wulf.refresh', 'wulf.access_expires']) {
      sessionStorage.removeItem(k);
    }
  },
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    const msg = (data && data.error) || `${r.status} ${r.statusText}`;
    throw new ApiError(r.status, msg);
  }
  return data;
}

let refreshing = null;
async function refreshToken() {
  if (!session.refresh) throw new ApiError(401, 'not logged in');
  if (!refreshing) {
    refreshing = call('POST', '/login/refresh', { refresh_token: session.refresh })
      .then((t) => session.save(t))
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// An account call: renews the access token when it is about to expire, and once on a 401.
async function api(method, path, body) {
  if (!session.access) throw new ApiError(401, 'not logged in');
  if (session.expires && session.expires - Date.now() / 1000 < 60) {
    await refreshToken().catch(() => {});
  }
  try {
    return await call(method, path, body, session.access);
  } catch (e) {
    if (e.status !== 401 || !session.refresh) throw e;
    try {
      await refreshToken();
    } catch {
      loggedOut('Your session ended: log in again.');
      throw e;
    }
    return call(method, path, body, session.access);
  }
}
const get = (path) => api('GET', path);

// ---------------------------------------------------------------------------------------
// Formatting

function size(bytes) {
  if (bytes === undefined || bytes === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 && u ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

function duration(secs) {
  if (secs === undefined || secs === null) return '';
  const s = Math.max(0, Math.floor(secs));
  const d = Math.floor(s / 86400);
  const h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function ago(secs) {
  if (secs === undefined || secs === null) return '';
  const s = Math.max(0, Math.round(secs));
  const [n, unit] = s < 120 ? [s, 'second'] : s < 7200 ? [Math.floor(s / 60), 'minute']
    : s < 172800 ? [Math.floor(s / 3600), 'hour'] : [Math.floor(s / 86400), 'day'];
  return `${n} ${unit}${n === 1 ? '' : 's'} ago`;
}

const stateLabel = (state, reason) => (reason ? `${state} (${reason})` : state);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

function kvTable(table, pairs) {
  table.replaceChildren(
    ...pairs.filter(([, v]) => v !== '' && v !== undefined && v !== null)
      .map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, String(v)))));
}

function message(text, isError = false) {
  const m = $('message');
  m.textContent = text;
  m.classList.toggle('error', isError);
}

// ---------------------------------------------------------------------------------------
// State

const app = {
  me: null,
  rows: [],
  byName: new Map(),
  groups: [],
  changes: null,
  table: null,
  filters: { hosts: null, group: '', state: '' },
  watching: false,
  loadedAt: 0,
  reloadTimer: null,
};

// ---------------------------------------------------------------------------------------
// Login

async function login(ev) {
  ev.preventDefault();
  $('login-error').textContent = '';
  const name = $('login-name').value.trim();
  const password = $('login-password').value;
  try {
    const t = await call('POST', '/login', { name, password });
    session.save(t);
    $('login-password').value = '';
    await start();
  } catch (e) {
    $('login-error').textContent = e.message;
  }
}

async function logout() {
  try {
    await api('POST', '/logout');
  } catch {
    // The session is forgotten here either way.
  }
  loggedOut('Logged out.');
}

function loggedOut(text) {
  session.clear();
  app.me = null;
  app.watching = false;
  $('who').hidden = true;
  show('login-view');
  if (text) message(text);
}

function show(view) {
  for (const v of ['login-view', 'nodes-view', 'node-view']) $(v).hidden = v !== view;
}

function may(role) {
  return app.me && ROLES.indexOf(app.me.role) >= ROLES.indexOf(role);
}

// Buttons marked data-role="operator" (or admin) are disabled for lower roles.
function applyRole() {
  for (const b of document.querySelectorAll('[data-role]')) {
    const need = b.dataset.role;
    const ok = may(need);
    b.disabled = !ok;
    b.title = ok ? '' : `needs role ${need} (you are ${app.me ? app.me.role : 'not logged in'})`;
  }
}

async function start() {
  const me = await get('/whoami');
  app.me = me;
  $('who-name').textContent = me.name;
  $('who-role').textContent = me.role;
  $('who').hidden = false;
  applyRole();
  get('/info').then((i) => {
    $('head-info').textContent = `head ${i.head} · ${i.store} store · wulf ${i.version}`;
  }).catch(() => {});
  message('');
  await loadAll();
  route();
  if (!app.watching) watch();
}

// ---------------------------------------------------------------------------------------
// Data

function bootConfig(node, attribs, defaultGroup) {
  // Effective _boot_config: the default group, then the node's groups in order, then the
  // node's own (later wins), as the head derives it.
  let v = attribs.get(defaultGroup)?._boot_config;
  for (const g of node.groups || []) {
    const a = attribs.get(g);
    if (a && a._boot_config !== undefined) v = a._boot_config;
  }
  if (node.attributes && node.attributes._boot_config !== undefined) {
    v = node.attributes._boot_config;
  }
  return v || '';
}

function applyStatus(row, s) {
  row.state = s ? s.state : 'new';
  row.reason = s ? s.down_reason || '' : '';
  row.stateLabel = stateLabel(row.state, row.reason);
  row.load = s && s.load ? s.load[0] : null;
  row.loadText = s && s.load ? s.load.map((x) => x.toFixed(2)).join(' ') : '';
  row.ramTotal = s ? s.ram_total : null;
  row.ramFree = s ? s.ram_free : null;
  row.ramUsed = row.ramTotal ? row.ramTotal - (row.ramFree || 0) : null;
  row.ramText = row.ramTotal ? `${size(row.ramFree)} / ${size(row.ramTotal)}` : '';
  let up = s ? s.last_uptime : undefined;
  if (up !== undefined && row.state === 'up') up += s.last_modified_secs || 0;
  row.uptime = up === undefined ? null : up;
  row.uptimeText = up === undefined ? '' : duration(up);
}

async function loadAll() {
  const t0 = performance.now();
  const [nodes, status, attribs, clusters] = await Promise.all([
    get('/node?fields=uid,name,index,ip,mac,groups,attributes'),
    get('/node/status?detail=1'),
    get('/attrib?fields=name,attributes'),
    get('/cluster'),
  ]);
  const groupAttrs = new Map(attribs.map((a) => [a.name, a.attributes || {}]));
  const defaultGroup = clusters[0] ? clusters[0].default_group : '';
  const byUid = new Map(status.map((s) => [s.uid, s]));
  app.rows = nodes.map((n) => {
    const row = {
      uid: n.uid,
      name: n.name,
      index: n.index ?? null,
      ip: n.ip || '',
      mac: n.mac || '',
      groupList: n.groups || [],
      groups: (n.groups || []).join(', '),
      boot: bootConfig(n, groupAttrs, defaultGroup),
    };
    applyStatus(row, byUid.get(n.uid));
    return row;
  });
  app.byName = new Map(app.rows.map((r) => [r.name, r]));
  app.groups = attribs.map((a) => a.name).sort();
  app.loadedAt = Date.now();
  fillGroupFilter();
  app.table.setRows(app.rows);
  applyFilters();
  document.body.dataset.loadMs = String(Math.round(performance.now() - t0));
}

// Status only (cheaper than everything): after the summary says something changed.
async function reloadStatus() {
  const status = await get('/node/status?detail=1');
  const byUid = new Map(status.map((s) => [s.uid, s]));
  if (status.length !== app.rows.length || status.some((s) => !app.byName.has(s.name))) {
    await loadAll();
    return;
  }
  for (const r of app.rows) applyStatus(r, byUid.get(r.uid));
  app.table.setRows(app.rows);
  applyFilters();
  if (!$('node-view').hidden && currentNode()) showNode(currentNode(), false);
}

function scheduleReload() {
  if (app.reloadTimer) return;
  // Big clusters change all the time: reload at most every few seconds.
  const every = app.rows.length > 2000 ? 10000 : 2000;
  const wait = Math.max(0, app.loadedAt + every - Date.now());
  app.reloadTimer = setTimeout(async () => {
    app.reloadTimer = null;
    app.loadedAt = Date.now();
    try {
      await reloadStatus();
    } catch (e) {
      if (e.status !== 401) message(`cannot read node status: ${e.message}`, true);
    }
  }, wait);
}

// Long-poll the status summary: the head answers when its change counter moves (or after
// about 10 s), so the page follows the cluster without polling hard.
async function watch() {
  app.watching = true;
  while (app.watching && session.access) {
    try {
      const since = app.changes === null ? '' : `?since=${app.changes}`;
      const s = await get(`/node/status/summary${since}`);
      if (!app.watching) break;
      const changed = app.changes !== null && s.changes !== app.changes;
      app.changes = s.changes;
      renderSummary(s);
      if (changed) scheduleReload();
    } catch (e) {
      if (e.status === 401) break;
      message(`cannot reach the head: ${e.message}`, true);
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Summary and table

function renderSummary(s) {
  const box = $('summary');
  if (!s.total) {
    box.replaceChildren(el('p', {}, 'No nodes.'));
    return;
  }
  const lines = s.groups.map((g) => {
    const label = stateLabel(g.state, g.down_reason);
    const b = el('button', { type: 'button', class: `state state-${g.state}`, 'data-state': label },
      `${label}: ${g.count}`);
    b.addEventListener('click', () => {
      $('f-state').value = label;
      $('f-hosts').value = '';
      applyFilters();
    });
    return el('div', { class: 'summary-line', 'data-state': label }, b, ' ',
      el('code', { class: 'hostlist' }, g.nodes));
  });
  box.replaceChildren(el('div', { class: 'summary-total' }, `${s.total} nodes`), ...lines);
  fillStateFilter(s.groups.map((g) => stateLabel(g.state, g.down_reason)));
}

function fillStateFilter(labels) {
  const sel = $('f-state');
  const keep = sel.value;
  const all = [...new Set(['up', 'booting', 'down', 'new', ...labels])];
  sel.replaceChildren(el('option', { value: '' }, 'any'),
    ...all.map((l) => el('option', { value: l }, l)));
  sel.value = all.includes(keep) ? keep : '';
}

function fillGroupFilter() {
  const sel = $('f-group');
  const keep = sel.value;
  sel.replaceChildren(el('option', { value: '' }, 'any'),
    ...app.groups.map((g) => el('option', { value: g }, g)));
  sel.value = app.groups.includes(keep) ? keep : '';
}

// Read the filter inputs and show the rows they select; returns the milliseconds it took.
function applyFilters() {
  const t0 = performance.now();
  const hostText = $('f-hosts').value;
  let hosts = null;
  $('f-error').textContent = '';
  if (hostText.trim()) {
    try {
      hosts = new Set(expand(hostText));
    } catch (e) {
      if (!(e instanceof HostlistError)) throw e;
      $('f-error').textContent = e.message;
      hosts = new Set();
    }
  }
  const group = $('f-group').value;
  const state = $('f-state').value;
  const n = app.table.apply((r) => (!hosts || hosts.has(r.name))
    && (!group || r.groupList.includes(group))
    && (!state || r.state === state || r.stateLabel === state));
  $('f-count').textContent = `${n} of ${app.rows.length} nodes`;
  $('f-shown').textContent = '';
  const ms = performance.now() - t0;
  document.body.dataset.filterMs = ms.toFixed(1);
  return ms;
}

// The hostlist of the rows shown (for acting on them with the CLI).
function shownHostlist() {
  return compress(app.table.view.map((i) => app.rows[i].name));
}

function makeTable() {
  const cols = [
    { key: 'name', label: 'Name', cls: 'c-name', text: (r) => r.name, sort: (r) => r.index ?? Infinity,
      link: (r) => `#/node/${encodeURIComponent(r.name)}` },
    { key: 'index', label: 'Index', cls: 'c-num', text: (r) => (r.index === null ? '' : String(r.index)),
      sort: (r) => r.index },
    { key: 'state', label: 'State', cls: 'c-state', text: (r) => r.stateLabel, sort: (r) => r.stateLabel },
    { key: 'ip', label: 'IP', cls: 'c-ip', text: (r) => r.ip,
      sort: (r) => (r.ip ? r.ip.split('.').reduce((a, b) => a * 256 + Number(b), 0) : null) },
    { key: 'mac', label: 'MAC', cls: 'c-mac', text: (r) => r.mac, sort: (r) => r.mac || null },
    { key: 'groups', label: 'Groups', cls: 'c-groups', text: (r) => r.groups, sort: (r) => r.groups || null },
    { key: 'boot', label: 'Boot config', cls: 'c-boot', text: (r) => r.boot, sort: (r) => r.boot || null },
    { key: 'load', label: 'Load', cls: 'c-load', text: (r) => r.loadText, sort: (r) => r.load },
    { key: 'ram', label: 'RAM free / total', cls: 'c-ram', text: (r) => r.ramText, sort: (r) => r.ramUsed },
    { key: 'uptime', label: 'Uptime', cls: 'c-num', text: (r) => r.uptimeText, sort: (r) => r.uptime },
  ];
  app.table = new VirtualTable($('node-table'), cols, (name) => {
    location.hash = `#/node/${encodeURIComponent(name)}`;
  });
}

// ---------------------------------------------------------------------------------------
// A node's page

const currentNode = () => {
  const m = /^#\/node\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
};

async function showNode(name, clear = true) {
  show('node-view');
  $('nv-name').textContent = name;
  if (clear) {
    $('exec-out').replaceChildren();
    $('action-result').textContent = '';
  }
  const ids = encodeURIComponent(name);
  try {
    const [[attrs], [st], [obj]] = await Promise.all([
      get(`/node/attributes?ids=${ids}`),
      get(`/node/status?ids=${ids}&detail=2`),
      get(`/node?ids=${ids}`),
    ]);
    if (currentNode() !== name) return;
    const label = stateLabel(st.state, st.down_reason);
    $('nv-state').textContent = label;
    $('nv-state').className = `state state-${st.state}`;
    let up = st.last_uptime;
    if (up !== undefined && st.state === 'up') up += st.last_modified_secs || 0;
    kvTable($('nv-config'), [
      ['uid', obj.uid], ['index', obj.index], ['type', obj.type], ['MAC', obj.mac],
      ['IP', obj.ip], ['groups', (obj.groups || []).join(', ')], ['power', obj.power_uri],
      ['boot sequence', obj.boot_sequence], ['description', obj.description],
    ]);
    kvTable($('nv-status'), [
      ['state', label], ['last change', ago(st.last_modified_secs)],
      [st.state === 'up' ? 'uptime' : 'last uptime', up === undefined ? '' : duration(up)],
      ['load', st.load ? st.load.map((x) => x.toFixed(2)).join(' ') : ''],
      ['RAM free / total', st.ram_total ? `${size(st.ram_free)} / ${size(st.ram_total)}` : ''],
      ['busy', st.state === 'up' && st.busy ? 'yes' : ''], ['head', st.head],
      ['report every', st.interval_secs ? `${st.interval_secs} s` : ''],
      ['hostname', st.hostname], ['kernel', st.kernel], ['cmdline', st.cmdline],
      ['SELinux', st.selinux], ['agent', st.agent ? st.agent.version : ''],
      ['modules', st.modules ? st.modules.length : ''],
    ]);
    const rows = Object.entries(attrs.attributes).map(([k, a]) => el('tr', {},
      el('th', {}, k), el('td', {}, a.value), el('td', { class: 'source' }, sourceText(a.source))));
    $('nv-attrs').tBodies[0].replaceChildren(...rows);
    const hw = st.hardware;
    if (hw) {
      kvTable($('nv-hw'), [
        ['CPU', `${hw.cpus} × ${hw.cpu_model}`], ['RAM', size(hw.ram_total)],
        ['system', `${hw.system_vendor} ${hw.product_name}`.trim()],
        ['board', `${hw.board_vendor} ${hw.board_name}`.trim()],
        ['BIOS', `${hw.bios_vendor} ${hw.bios_version}`.trim()],
        ...(hw.nics || []).map((n) => [`NIC ${n.name}`,
          `${n.mac}${n.speed_mbps ? `, ${n.speed_mbps} Mb/s` : ''}${n.mtu ? `, MTU ${n.mtu}` : ''}`]),
        ...(hw.disks || []).map((d) => [`disk ${d.name}`,
          `${size(d.bytes)}${d.model ? `, ${d.model}` : ''}${d.rotational ? ', rotational' : ''}`]),
      ]);
    } else {
      $('nv-hw').replaceChildren(el('tr', {}, el('td', {}, 'No hardware report yet.')));
    }
  } catch (e) {
    $('nv-state').textContent = '';
    message(`cannot read ${name}: ${e.message}`, true);
  }
}

// Where an effective attribute comes from: {from: default|group|node, name}.
function sourceText(s) {
  if (!s || typeof s !== 'object') return String(s ?? '');
  if (s.from === 'default') return `default group ${s.name}`;
  if (s.from === 'group') return `group ${s.name}`;
  return s.from || '';
}

const CONFIRM = new Set(['off', 'cycle', 'reset', 'shutdown', 'reboot']);

async function power(action) {
  const name = currentNode();
  if (!name) return;
  if (CONFIRM.has(action) && !window.confirm(`${action} ${name}?`)) return;
  const out = $('action-result');
  out.textContent = `${action} ${name}…`;
  try {
    const r = await api('POST', `/node/power?ids=${encodeURIComponent(name)}`,
      { action, mode: 'auto', timeout_secs: 30 });
    out.textContent = r.results.map((n) => `${n.name}: ${n.ok ? 'ok' : 'failed'}`
      + `${n.result ? ` — ${n.result}` : ''} (via ${n.via}${n.millis !== undefined ? `, ${n.millis} ms` : ''})`
      + `${n.detail ? `: ${n.detail}` : ''}`).join('\n');
    out.classList.toggle('error', r.results.some((n) => !n.ok));
  } catch (e) {
    out.textContent = `${action} refused: ${e.message}`;
    out.classList.add('error');
  }
}

// Split a command line into words: whitespace separates, '…' and "…" quote.
function words(line) {
  const out = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(line))) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

async function exec(ev) {
  ev.preventDefault();
  const name = currentNode();
  const argv = words($('exec-cmd').value);
  const box = $('exec-out');
  if (!name || !argv.length) return;
  box.replaceChildren(el('p', {}, `running ${argv.join(' ')} on ${name}…`));
  try {
    const r = await api('POST', `/node/exec?ids=${encodeURIComponent(name)}`,
      { argv, timeout_secs: 60 });
    box.replaceChildren(...r.results.map((n) => el('div', { class: 'exec-result' },
      el('p', { class: n.exit === 0 ? 'ok' : 'error' },
        `${n.name}: ${n.exit !== undefined && n.exit !== null ? `exit ${n.exit}` : 'did not run'}`
        + `${n.error ? ` — ${n.error}` : ''} (${n.millis} ms)`),
      n.stdout ? el('pre', { class: 'stdout' }, n.stdout) : '',
      n.stderr ? el('pre', { class: 'stderr' }, n.stderr) : '')));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error' }, `exec refused: ${e.message}`));
  }
}

// ---------------------------------------------------------------------------------------
// Routing and start

function route() {
  if (!app.me) {
    show('login-view');
    return;
  }
  const name = currentNode();
  if (name) showNode(name);
  else {
    show('nodes-view');
    app.table.paint(true);
  }
}

function init() {
  makeTable();
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('filters').addEventListener('submit', (e) => { e.preventDefault(); applyFilters(); });
  let timer = null;
  $('f-hosts').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(applyFilters, 150);
  });
  $('f-group').addEventListener('change', applyFilters);
  $('f-state').addEventListener('change', applyFilters);
  $('f-clear').addEventListener('click', () => {
    $('f-hosts').value = '';
    $('f-group').value = '';
    $('f-state').value = '';
    applyFilters();
  });
  $('f-copy').addEventListener('click', () => {
    $('f-shown').textContent = shownHostlist();
  });
  for (const b of document.querySelectorAll('[data-power]')) {
    b.addEventListener('click', () => power(b.dataset.power));
  }
  $('exec-form').addEventListener('submit', exec);
  window.addEventListener('hashchange', route);
  applyRole();
  // For the page's test and for measuring: filter and sort timings.
  window.wulfGui = {
    applyFilters,
    sortBy: (key) => {
      const t0 = performance.now();
      app.table.sortBy(key);
      return performance.now() - t0;
    },
    rendered: () => app.table.rendered(),
    shown: () => app.table.view.length,
    scrollToEnd: () => app.table.scrollToEnd(),
    reload: () => loadAll(),
  };
  if (session.access) {
    start().catch((e) => {
      if (e.status === 401) loggedOut('Your session ended: log in again.');
      else message(`cannot reach the head: ${e.message}`, true);
    });
  } else {
    show('login-view');
  }
}

init();
