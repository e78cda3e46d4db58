// Drives the head's web page in Debian's headless Chromium through playwright-core
// (crates/cli/tests/gui.rs runs it). Usage: node gui.mjs main|scale, with
//   WULF_URL        the head's HTTPS URL
//   GUI_OUT         where screenshots and timings go (target/gui)
//   GUI_PROFILE     a new empty directory for the browser's profile
//   GUI_OPERATOR, GUI_VIEWER   NAME:PASSWORD of an operator and a viewer account
//   HOME            holds .pki/nssdb with the cluster CA trusted (certutil), which is how
//                   Chromium on Linux learns a CA: no certificate errors are ignored.
// Prints one JSON line of results; exits non-zero on the first failed check.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(
  path.join(process.env.PLAYWRIGHT_DIR || '/opt/wulf-test/playwright', 'package.json'));
const { chromium } = require('playwright-core');

const mode = process.argv[2] || 'main';
const url = process.env.WULF_URL;
const out = process.env.GUI_OUT;
const [opName, opPass] = process.env.GUI_OPERATOR.split(':');
const [viewName, viewPass] = (process.env.GUI_VIEWER || ':').split(':');
const results = { mode };
const T = 20000;

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const context = await chromium.launchPersistentContext(process.env.GUI_PROFILE, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1400, height: 860 },
  env: { ...process.env },
  timeout: 60000,
});
const problems = [];
async function newPage() {
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The refused login and the viewer's refused power request are checked, not problems.
    const expected = /Failed to load resource: .* status of (401|403)/;
    if (m.type() === 'error' && !expected.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  return page;
}

async function login(page, name, pass) {
  const resp = await page.goto(url + '/');
  check(resp.status() === 200, `GET / answered ${resp.status()}`);
  const h = resp.headers();
  check((h['content-security-policy'] || '').includes("script-src 'self'"), 'CSP header');
  check(h['x-frame-options'] === 'DENY', 'X-Frame-Options DENY');
  await page.locator('#login-form').waitFor();
  await page.fill('#login-name', name);
  await page.fill('#login-password', pass);
  await page.click('#login-form button[type=submit]');
  await page.locator('#who-name', { hasText: name }).waitFor();
}

async function nextFrame(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
}

// Time one of the page's own operations (window.wulfGui) up to the next painted frame, in ms.
async function timed(page, kind, arg) {
  return page.evaluate(async ([k, a]) => {
    const g = window.wulfGui;
    const t0 = performance.now();
    if (k === 'hosts' || k === 'state') {
      document.getElementById(k === 'hosts' ? 'f-hosts' : 'f-state').value = a;
      g.applyFilters();
    } else if (k === 'sort') {
      g.sortBy(a);
    } else if (k === 'scroll') {
      g.scrollToEnd();
    }
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t0;
  }, [kind, arg]);
}

const shownNames = (page) => page.$$eval('.vt-body .vt-row .c-name a', (as) => as.map((a) => a.textContent));

try {
  if (mode === 'main') {
    const page = await newPage();
    // A wrong password is refused and says so.
    await page.goto(url + '/');
    await page.fill('#login-name', opName);
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error', { hasText: 'wrong account name or password' }).waitFor();

    await login(page, opName, opPass);
    check((await page.textContent('#who-role')) === 'operator', 'role shown');
    check(await page.evaluate(() => !!sessionStorage.getItem('wulf.access')), 'token in sessionStorage');
    // 16 nodes up in the summary, as a hostlist.
    await page.locator('.summary-line[data-state="up"]', { hasText: 'up: 16' }).waitFor();
    const hl = await page.textContent('.summary-line[data-state="up"] .hostlist');
    check(hl === 'n[0-15]', `summary hostlist ${hl}`);
    await page.locator('#f-count', { hasText: '16 of 16 nodes' }).waitFor();
    // Filter by hostlist.
    await page.fill('#f-hosts', 'n[2-4,9]');
    await page.locator('#f-count', { hasText: '4 of 16 nodes' }).waitFor();
    let names = await shownNames(page);
    check(JSON.stringify(names) === JSON.stringify(['n2', 'n3', 'n4', 'n9']), `filtered ${names}`);
    // A bad hostlist says what is wrong.
    await page.fill('#f-hosts', 'n[5-3]');
    await page.locator('#f-error', { hasText: 'reversed range' }).waitFor();
    await page.fill('#f-hosts', '');
    // Filter by state and by group.
    await page.selectOption('#f-state', 'up');
    await page.locator('#f-count', { hasText: '16 of 16 nodes' }).waitFor();
    await page.selectOption('#f-state', 'down');
    await page.locator('#f-count', { hasText: '0 of 16 nodes' }).waitFor();
    await page.selectOption('#f-state', '');
    await page.selectOption('#f-group', 'gpu');
    await page.locator('#f-count', { hasText: '4 of 16 nodes' }).waitFor();
    names = await shownNames(page);
    check(JSON.stringify(names) === JSON.stringify(['n12', 'n13', 'n14', 'n15']), `group gpu: ${names}`);
    const boots = await page.$$eval('.vt-body .vt-row .c-boot', (cs) => cs.map((c) => c.textContent));
    check(boots.every((b) => b === 'compute'), `boot configs from group gpu: ${boots}`);
    await page.click('#f-copy');
    check((await page.textContent('#f-shown')) === 'n[12-15]', 'shown as a hostlist');
    await page.selectOption('#f-group', '');
    // Sort by name, descending.
    await page.click('.vt-head [data-key="name"]');
    await page.click('.vt-head [data-key="name"]');
    names = await shownNames(page);
    check(names[0] === 'n15' && names[15] === 'n0', `sorted descending: ${names}`);
    await page.click('.vt-head [data-key="name"]');
    await page.locator('.vt-body .vt-row .c-name a').first().waitFor();
    await page.mouse.move(0, 0);
    fs.mkdirSync(out, { recursive: true });
    // The 16 rows and no empty table below them.
    await page.screenshot({ path: path.join(out, 'nodes.png'), clip: { x: 0, y: 0, width: 1400, height: 610 } });

    // An access token the head refuses (expired, say) is renewed with the refresh token.
    await page.evaluate(() => sessionStorage.setItem('wulf.access', 'wulf1.e30.bad'));
    // A node's page: attributes with their layers, status, hardware, actions.
    await page.click('.vt-body .c-name a[data-name="n3"]');
    await page.locator('#nv-name', { hasText: 'n3' }).waitFor();
    await page.locator('#nv-state', { hasText: 'up' }).waitFor();
    await page.locator('#nv-attrs tbody tr').first().waitFor();
    const attrs = await page.$$eval('#nv-attrs tbody tr', (trs) => trs.map((tr) =>
      [...tr.children].map((td) => td.textContent)));
    const find = (k) => attrs.find((a) => a[0] === k) || [];
    check(find('_status_secs')[2] === 'default group DefaultAttribs', `_status_secs: ${find('_status_secs')}`);
    check(find('rack')[1] === 'r1' && find('rack')[2] === 'node', `rack: ${find('rack')}`);
    await page.locator('#nv-hw', { hasText: 'Simulated CPU' }).waitFor();
    const renewed = await page.evaluate(() => sessionStorage.getItem('wulf.access'));
    check(renewed && renewed !== 'wulf1.e30.bad', 'the access token was renewed');
    for (const b of await page.$$('[data-power], #exec-run')) {
      check(!(await b.isDisabled()), 'an operator may act');
    }
    // exec, with its output.
    await page.fill('#exec-cmd', 'echo "hello from" the page');
    await page.click('#exec-run');
    await page.locator('#exec-out .stdout', { hasText: 'hello from the page' }).waitFor();
    check((await page.textContent('#exec-out .ok')).includes('exit 0'), 'exec exit 0');
    await page.mouse.move(0, 0);
    await page.screenshot({ path: path.join(out, 'node.png'), fullPage: true });
    // A reboot (soft, through the simulated agent), confirmed in a dialog.
    page.once('dialog', (d) => d.accept());
    await page.click('[data-power="reboot"]');
    await page.locator('#action-result', { hasText: 'n3: ok' }).waitFor();
    results.reboot = await page.textContent('#action-result');
    // Power on needs a BMC, which a simulated node has not: the answer says so.
    await page.click('[data-power="on"]');
    await page.locator('#action-result', { hasText: 'n3: failed' }).waitFor();
    results.power_on = await page.textContent('#action-result');

    // Log out: the token is gone and the page asks for a login.
    await page.goto(url + '/#/');
    await page.click('#logout');
    await page.locator('#login-form').waitFor();
    check(await page.evaluate(() => !sessionStorage.getItem('wulf.access')), 'token dropped');

    // A viewer sees the actions disabled, and the API refuses its power request.
    await login(page, viewName, viewPass);
    check((await page.textContent('#who-role')) === 'viewer', 'viewer role shown');
    await page.goto(url + '/#/node/n5');
    await page.locator('#nv-state', { hasText: 'up' }).waitFor();
    for (const b of await page.$$('[data-power], #exec-run')) {
      check(await b.isDisabled(), 'a viewer may not act');
    }
    const refused = await page.evaluate(async () => {
      const r = await fetch('/api/v1/node/power?ids=n5', {
        method: 'POST',
        headers: { Authorization: `Bearer ${sessionStorage.getItem('wulf.access')}`,
          'Content-Type': 'application/json' },
        body: JSON.stringify({ action: 'reboot' }),
      });
      return [r.status, (await r.json()).error];
    });
    check(refused[0] === 403, `viewer power request answered ${refused[0]}`);
    results.viewer_power = refused;
  } else {
    // 10,000 nodes: load, filter, sort and scroll, timed.
    const page = await newPage();
    await login(page, opName, opPass);
    await page.locator('#f-count', { hasText: '10000 of 10000 nodes' }).waitFor({ timeout: 60000 });
    results.load_ms = Number(await page.evaluate(() => document.body.dataset.loadMs));
    results.rendered_rows = await page.evaluate(() => window.wulfGui.rendered());
    check(results.rendered_rows < 120, `only the visible rows are in the page (${results.rendered_rows})`);
    results.filter_hostlist_ms = await timed(page, 'hosts', 'n[100-5099]');
    check((await page.textContent('#f-count')).startsWith('5000 of'), 'hostlist filter of 5000');
    results.filter_hostlist_all_ms = await timed(page, 'hosts', 'n[0-9999]');
    results.filter_clear_ms = await timed(page, 'hosts', '');
    results.filter_state_ms = await timed(page, 'state', 'up');
    check((await page.textContent('#f-count')).startsWith('16 of'), 'state filter');
    await timed(page, 'state', '');
    for (const key of ['state', 'ip', 'mac', 'uptime', 'name']) {
      results[`sort_${key}_ms`] = await timed(page, 'sort', key);
    }
    results.sort_name_desc_ms = await timed(page, 'sort', 'name');
    const first = await shownNames(page);
    check(first[0] === 'n9999', `descending by name starts ${first[0]}`);
    results.scroll_end_ms = await timed(page, 'scroll');
    await nextFrame(page);
    const last = await shownNames(page);
    check(last.includes('n0'), `scrolled to the end: ${last.slice(-3)}`);
    results.rendered_rows_after_scroll = await page.evaluate(() => window.wulfGui.rendered());
    await page.mouse.move(0, 0);
    await page.screenshot({ path: path.join(out, 'nodes-10000.png') });
  }
  check(problems.length === 0, `the page reported problems:\n${problems.join('\n')}`);
  console.log(JSON.stringify(results));
} finally {
  await context.close();
}
