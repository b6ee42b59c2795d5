/**
 * The web page in a real headless Chromium (Debian's package, driven by playwright-core), through the
 * real Hub: login at the Hub's form and its OAuth flow, a job submitted with a code folder, watched to
 * success with its log, deleted; another user sees none of it; forged callbacks, cross-site posts
 * and HTML in a log line get nowhere.
 *
 * Screenshots of the jobs list and of a job page are saved under the test's temporary directory,
 * and copied to KBATCH_WEB_SCREENSHOTS when set (the README's picture in docs/ comes from there).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { namespaceForUser } from '../../lib/k8s/names.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, eventually } from './helpers.ts';

const chromiumPath = process.env.KBATCH_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y chromium (or set KBATCH_CHROMIUM)`);

// The browser part must stay bounded: a hang anywhere fails the suite instead of stalling the run.
const watchdog = setTimeout(() => {
  console.error('web.test.ts: gave up after 180 s');
  process.exit(1);
}, 180_000);
watchdog.unref();

const work = mkdtempSync(join(tmpdir(), 'kbatch-web-'));
const screenshots = join(work, 'screenshots');
mkdirSync(screenshots);
// The per-pod CPU maximum is above the fake node's 1000 cores, so a valid job can stay unschedulable.
const stack = await startStack({
  KBATCH_MAX_JOB_RESOURCES: JSON.stringify({ cpu: '5000', memory: '256Gi', 'ephemeral-storage': '100Gi', 'nvidia.com/gpu': '8' }),
});
const serviceUrl = stack.serviceUrl;
const admin = adminClients(stack.cluster.adminKubeconfig);
const aliceApi = client(serviceUrl, stack.hub.tokens.alice);
const aliceNs = namespaceForUser('alice');
// The user's volume (a directory here): where the test, playing the job, writes its outputs.
const aliceVolume = await stack.cluster.execDir(aliceNs);
const xssLine = '<img src=x onerror="window.__kbatchXss=1">';

const browser: Browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const contexts: BrowserContext[] = [];
async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  context.setDefaultTimeout(15_000);
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[browser] ${error.message}`));
  return page;
}

/** The Hub's own login form (dummy authenticator: any password), reached by opening the service. */
async function logIn(page: Page, user: string): Promise<void> {
  await page.goto(serviceUrl);
  await page.waitForURL(/\/hub\/login/);
  await page.fill('#username_input', user);
  await page.fill('#password_input', 'any password');
  await page.click('#login_submit');
  await page.waitForURL((url) => url.href === serviceUrl);
}

const sessionCookieOf = async (page: Page) => (await page.context().cookies()).find((c) => c.name === 'kbatch-session');
const csrfOf = (page: Page) => page.getAttribute('meta[name="kbatch-csrf"]', 'content');

let alice: Page;
let jobName = '';

// ---------------------------------------------------------------------------------------------
const login = suite('logging in through the Hub');
login("a browser without a session is sent through the Hub's login and OAuth, and lands on the jobs list", async () => {
  alice = await newPage();
  await logIn(alice, 'alice');
  await alice.getByText('No jobs yet').waitFor();
  assert.match((await alice.textContent('.who')) ?? '', /alice/);
});
login("the Hub's home links to the service", async () => {
  await alice.goto(`${stack.hub.url}/hub/home`);
  assert.ok(await alice.locator('a[href$="/services/kbatch/"]').count(), 'a link to /services/kbatch/ on the Hub home');
  await alice.goto(serviceUrl);
});
login("the session cookie is encrypted, HttpOnly, SameSite=Lax and scoped to the service's path", async () => {
  const cookie = await sessionCookieOf(alice);
  assert.ok(cookie, 'kbatch-session is set');
  assert.is(cookie!.httpOnly, true);
  assert.is(cookie!.sameSite, 'Lax');
  assert.is(cookie!.path, '/services/kbatch/');
  assert.is(cookie!.value.split('.').length, 5, 'a compact JWE');
  assert.not.ok(cookie!.value.includes(stack.hub.tokens.alice));
  assert.is(await alice.evaluate(() => document.cookie.includes('kbatch-session')), false, "the page's script cannot read it");
  assert.is(await alice.evaluate(() => document.documentElement.outerHTML.includes('kbatch-session')), false);
});
login('a user without the kbatch scope is refused at the Hub, and gets no session', async () => {
  const page = await newPage();
  const response = await (async () => {
    await page.goto(serviceUrl);
    await page.fill('#username_input', 'carol');
    await page.fill('#password_input', 'x');
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url().includes('/oauth2/authorize') && r.request().method() === 'GET' && r.status() !== 302),
      page.click('#login_submit'),
    ]);
    return answer;
  })();
  assert.is(response.status(), 403);
  assert.not.ok(await sessionCookieOf(page));
  await page.context().close();
});
login.run();

// ---------------------------------------------------------------------------------------------
const submitting = suite('submitting a job with a code folder and following it');
submitting.before(async () => {
  await stack.cluster.setLogs(aliceNs, ['hello from the web page', xssLine, 'done']);
});
submitting('the form uploads the folder with the spec, and the page moves to the new job', async () => {
  const folder = join(work, 'project');
  mkdirSync(join(folder, 'pkg'), { recursive: true });
  writeFileSync(join(folder, 'main.py'), 'print("hello")\n');
  writeFileSync(join(folder, 'pkg', 'util.py'), 'X = 1\n');
  await alice.click('text=Submit a job');
  await alice.fill('#name', 'web-hello');
  await alice.fill('#image', 'python:3.12-slim');
  await alice.fill('#command', 'python main.py --greeting "hi there"');
  await alice.fill('#env', 'GREETING=hi');
  await alice.setInputFiles('#code-folder', folder);
  assert.match((await alice.textContent('#code-summary')) ?? '', /2 files/);
  await alice.click('button[type=submit]');
  await alice.waitForURL(/\/job\/web-hello-/);
  jobName = decodeURIComponent(new URL(alice.url()).pathname.split('/').pop()!);
  const job = await aliceApi('GET', `api/v1/jobs/${jobName}`);
  assert.is(job.status, 200);
  assert.equal(job.body.command, ['python', 'main.py', '--greeting', 'hi there']);
});
submitting('the code arrived with its paths inside the folder', async () => {
  const pods = await eventually(
    "the job's pod",
    async () => (await admin.core.listNamespacedPod({ namespace: aliceNs, labelSelector: `job-name=${jobName}` })).items[0],
  );
  const archive = pods.spec!.volumes!.find((v) => v.name === 'code-archive')!.configMap!.name!;
  const configMap = await admin.core.readNamespacedConfigMap({ name: archive, namespace: aliceNs });
  const tgz = join(work, 'code.tgz');
  writeFileSync(tgz, Buffer.from(configMap.binaryData!['code.tgz']!, 'base64'));
  const listing = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' });
  assert.match(listing, /(^|\n)(\.\/)?main\.py\n/);
  assert.match(listing, /(^|\n)(\.\/)?pkg\/util\.py\n/);
});
submitting('the job page shows it reach succeeded, with its pod and exit code', async () => {
  await alice.locator('.facts .state-succeeded').waitFor({ timeout: 30_000 });
  const pods = (await alice.textContent('table')) ?? '';
  assert.match(pods, /Succeeded/);
  assert.match(pods, /exit code 0/);
});
submitting('the Outputs section lists what the job wrote, and each file and the whole archive download', async () => {
  const dir = join(aliceVolume, 'outputs', jobName);
  mkdirSync(join(dir, 'plots'), { recursive: true });
  const result = 'accuracy 0.93\n';
  const figure = randomBytes(300_000);
  writeFileSync(join(dir, 'result.txt'), result);
  writeFileSync(join(dir, 'plots', 'fig.png'), figure);
  await alice.click('section[aria-labelledby="outputs-title"] >> text=Refresh');
  await alice.locator('#outputs tr[data-path="plots/fig.png"]').waitFor();
  assert.match((await alice.textContent('#outputs tr[data-path="plots/fig.png"]')) ?? '', /293\.0 KiB/);
  assert.match((await alice.textContent('#outputs-summary')) ?? '', /2 files, 293\.0 KiB/);

  const [one] = await Promise.all([alice.waitForEvent('download'), alice.click('button[aria-label="Download plots/fig.png"]')]);
  assert.is(one.suggestedFilename(), 'fig.png');
  assert.ok(readFileSync((await one.path())!).equals(figure), 'the file, byte-identical');
  await alice.getByText('Downloaded plots/fig.png (293.0 KiB).').waitFor();

  const [archive] = await Promise.all([alice.waitForEvent('download'), alice.click('#outputs-all')]);
  assert.is(archive.suggestedFilename(), `${jobName}-outputs.tar.gz`);
  const listing = execFileSync('tar', ['-tzf', (await archive.path())!], { encoding: 'utf8' });
  assert.match(listing, /(^|\n)(\.\/)?result\.txt\n/);
  assert.match(listing, /(^|\n)(\.\/)?plots\/fig\.png\n/);
});
submitting('a large output goes straight into a file where the browser can write one (no blob in memory)', async () => {
  const big = randomBytes(70 * 1024 * 1024);
  writeFileSync(join(aliceVolume, 'outputs', jobName, 'big.bin'), big);
  // Stands in for Chromium's save dialog, which a headless run cannot answer: what the page writes is kept.
  // Plain JavaScript: a function would carry the test compiler's helpers into the page.
  await alice.evaluate(`(() => {
    const saved = { name: '', chunks: [], closed: false };
    window.__saved = saved;
    window.showSaveFilePicker = async (options) => {
      saved.name = options.suggestedName;
      return {
        createWritable: async () => ({
          write: async (chunk) => void saved.chunks.push(chunk.slice()),
          close: async () => void (saved.closed = true),
          abort: async () => undefined,
        }),
      };
    };
  })()`);
  await alice.click('section[aria-labelledby="outputs-title"] >> text=Refresh');
  await alice.locator('#outputs tr[data-path="big.bin"]').waitFor();
  let blobDownloads = 0;
  alice.on('download', () => blobDownloads++);
  await alice.click('button[aria-label="Download big.bin"]');
  await alice.getByText('Downloaded big.bin (70.0 MiB).').waitFor({ timeout: 60_000 });
  const saved = await alice.evaluate(`(async () => {
    const { name, chunks, closed } = window.__saved;
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
    return { name, closed, bytes: all.length, sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('') };
  })()`);
  assert.equal(saved, { name: 'big.bin', closed: true, bytes: big.length, sha256: createHash('sha256').update(big).digest('hex') });
  assert.is(blobDownloads, 0, 'not through a blob');
});
submitting('the log is shown, and a line of HTML is text that never runs', async () => {
  await alice.locator('#log .line', { hasText: 'hello from the web page' }).waitFor();
  await alice.locator('#log .line', { hasText: 'done' }).waitFor();
  await alice.locator('#log .line.meta', { hasText: 'end of log' }).waitFor({ timeout: 20_000 });
  const lines = await alice.locator('#log .line').allTextContents();
  assert.ok(lines.includes(xssLine), `the HTML line as text: ${JSON.stringify(lines)}`);
  assert.is(await alice.locator('#log img').count(), 0, 'no element was created from the log');
  assert.is(await alice.evaluate(() => (window as unknown as { __kbatchXss?: number }).__kbatchXss), undefined);
  await alice.screenshot({ path: join(screenshots, 'job.png'), fullPage: true });
});
submitting("the jobs list shows the job with its state and image, and an array's progress live", async () => {
  const array = await aliceApi('POST', 'api/v1/jobs', {
    json: { name: 'web-array', image: 'busybox', command: ['sh', '-c', 'echo $JOB_COMPLETION_INDEX'], completions: 3, parallelism: 3 },
  });
  assert.is(array.status, 201, array.text);
  await alice.click('text=← All jobs');
  const row = alice.locator(`tr[data-job="${jobName}"]`);
  await row.waitFor();
  assert.match((await row.textContent()) ?? '', /succeeded/);
  assert.match((await row.textContent()) ?? '', /python:3\.12-slim/);
  const arrayRow = alice.locator(`tr[data-job="${array.body.name}"]`);
  await arrayRow.waitFor();
  assert.ok((await alice.locator('tbody tr').first().getAttribute('data-job')) === array.body.name, 'newest first');
  // The list polls: the array's tasks finish while the page stays open.
  await arrayRow.getByText('3/3 succeeded').waitFor({ timeout: 30_000 });
  await alice.screenshot({ path: join(screenshots, 'jobs.png'), fullPage: true });
});
submitting('the list pages past the first screen, older and back to newer', async () => {
  await alice.goto(`${serviceUrl}?limit=1`);
  const rows = () => alice.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-job')));
  await alice.locator('tbody tr').first().waitFor();
  const first = await rows();
  assert.is(first.length, 1);
  await alice.click('button:has-text("Older")');
  await alice.getByText('Page 2').waitFor();
  await eventually('the second page', async () => (await rows())[0] !== first[0]);
  assert.is((await rows())[0], jobName);
  assert.ok(await alice.locator('button:has-text("Older")').isDisabled(), 'no third page');
  await alice.click('button:has-text("Newer")');
  await alice.getByText('Page 1').waitFor();
  await eventually('the first page again', async () => (await rows())[0] === first[0]);
});
submitting('a failing API shows an error state, and the list recovers by itself', async () => {
  const pattern = `${serviceUrl}api/v1/jobs?*`;
  await alice.route(pattern, (route) =>
    route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({ detail: 'Kubernetes API unreachable', status: 503, reason: 'Unavailable' }),
    }),
  );
  await alice.goto(serviceUrl);
  await alice.getByText('Could not load jobs: Kubernetes API unreachable (retrying)').waitFor();
  await alice.unroute(pattern);
  await alice.locator(`tr[data-job="${jobName}"]`).waitFor();
  assert.is(await alice.getByText('Could not load jobs').count(), 0);
});
submitting("an array job's log can be followed for one pod", async () => {
  await alice.goto(serviceUrl);
  const arrayName = await alice.locator('tbody tr').first().getAttribute('data-job');
  await alice.goto(`${serviceUrl}job/${arrayName}`);
  await eventually('three pods in the pod switch', async () => (await alice.locator('#log-pod option').count()) === 4, 15_000);
  const pod = await alice.locator('#log-pod option').nth(2).getAttribute('value');
  const [response] = await Promise.all([
    alice.waitForResponse((r) => r.url().includes('/logs?') && new URL(r.url()).searchParams.get('pod') === pod),
    alice.selectOption('#log-pod', pod!),
  ]);
  assert.is(response.status(), 200);
  await alice.locator('#log .line', { hasText: 'hello from the web page' }).waitFor();
  assert.not.match((await alice.locator('#log').textContent()) ?? '', /\[web-array/, "one pod's lines carry no pod prefix");
});
submitting('files dropped on the form are taken as the code', async () => {
  await alice.goto(`${serviceUrl}new`);
  await alice.locator('#code-drop').evaluate((zone) => {
    const data = new DataTransfer();
    data.items.add(new File(['print(1)'], 'main.py'));
    data.items.add(new File(['x'], 'data.csv'));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await alice.locator('#code-summary', { hasText: '2 files' }).waitFor();
  assert.match((await alice.textContent('#code-summary')) ?? '', /main\.py, data\.csv/);
});
submitting('an error from the API is shown next to the field it names', async () => {
  await alice.goto(`${serviceUrl}new`);
  await alice.fill('#name', 'bad-resources');
  await alice.fill('#image', 'busybox');
  await alice.fill('#memory', 'lots');
  await alice.click('button[type=submit]');
  await alice.locator('#memory-error', { hasText: 'resources.requests.memory' }).waitFor();
  assert.is(await alice.getAttribute('#memory', 'aria-invalid'), 'true');
  assert.match(alice.url(), /\/new$/);
});
submitting('a job no node can take says why it is pending, from its events', async () => {
  const submitted = await aliceApi('POST', 'api/v1/jobs', {
    json: { name: 'too-big', image: 'busybox', command: ['true'], resources: { requests: { cpu: '2000' } } },
  });
  assert.is(submitted.status, 201, submitted.text);
  await alice.goto(`${serviceUrl}job/${submitted.body.name}`);
  await alice.locator('.why', { hasText: 'FailedScheduling' }).waitFor({ timeout: 30_000 });
  assert.match((await alice.textContent('.why')) ?? '', /Why pending: FailedScheduling: .*cpu/i);
  await aliceApi('DELETE', `api/v1/jobs/${submitted.body.name}`);
});
submitting.run();

// ---------------------------------------------------------------------------------------------
const longLog = suite('a very long log');
longLog('100,000 lines arrive without freezing the page, which keeps the last 5,000 and says so', async () => {
  // Served by the browser's network layer: KWOK's fake kubelet paces a followed log (minutes for
  // 100k lines), and what is tested here is the page, not the log pipeline behind it.
  const stamp = new Date().toISOString();
  const body = Array.from({ length: 100_000 }, (_, i) => `${stamp} line ${i + 1} of a long log\n`).join('');
  const pattern = `${serviceUrl}api/v1/jobs/${jobName}/logs?*`;
  await alice.route(pattern, (route) => route.fulfill({ status: 200, contentType: 'text/plain; charset=utf-8', body }));
  try {
    await alice.goto(`${serviceUrl}job/${jobName}`);
    await alice.locator('#log .line', { hasText: 'line 100000 of a long log' }).waitFor({ timeout: 30_000 });
    const started = Date.now();
    const shown = await alice.locator('#log .line').count();
    assert.ok(Date.now() - started < 2000, 'the page answers at once');
    assert.ok(shown <= 5001 && shown >= 4999, `lines in the page: ${shown}`);
    assert.is(await alice.locator('#log .line', { hasText: /^line 1 of a long log$/ }).count(), 0, 'the oldest lines left the page');
    await alice.getByText(/95,00\d earlier lines are not shown/).waitFor();
  } finally {
    await alice.unroute(pattern);
  }
});
longLog('a dropped log stream resumes from the last line seen, without repeats or gaps', async () => {
  const t = (s: number) => `2026-01-01T00:00:0${s}.000000000Z`;
  const requests: string[] = [];
  const pattern = `${serviceUrl}api/v1/jobs/${jobName}/logs?*`;
  await alice.route(pattern, (route) => {
    requests.push(route.request().url());
    const first = requests.length === 1;
    // First the server fails mid-stream (its in-band marker); the resumed request overlaps what was shown.
    const body = first
      ? `${t(1)} one\n${t(2)} two\n${t(2)} two again\n[kbatch] stream aborted: upstream went away\n`
      : `${t(2)} two\n${t(2)} two again\n${t(3)} three\n`;
    return route.fulfill({ status: 200, contentType: 'text/plain; charset=utf-8', body });
  });
  try {
    await alice.goto(`${serviceUrl}job/${jobName}`);
    await alice.locator('#log .line.meta', { hasText: 'end of log' }).waitFor({ timeout: 15_000 });
    assert.equal(await alice.locator('#log .line:not(.meta)').allTextContents(), ['one', 'two', 'two again', 'three']);
    assert.is(requests.length, 2);
    assert.is(new URL(requests[1]!).searchParams.get('since'), '2026-01-01T00:00:01.000Z', 'a second before the last line seen');
  } finally {
    await alice.unroute(pattern);
  }
});
longLog.run();

// ---------------------------------------------------------------------------------------------
const isolation = suite('another user sees none of it');
let bob: Page;
isolation("bob, logged in, does not see alice's job in his list", async () => {
  bob = await newPage();
  await logIn(bob, 'bob');
  await bob.getByText('No jobs yet').waitFor();
  assert.is(await bob.locator(`tr[data-job="${jobName}"]`).count(), 0);
});
isolation("bob gets 404 on the URL of alice's job page, and from the API with his session", async () => {
  const response = await bob.goto(`${serviceUrl}job/${jobName}`);
  assert.is(response!.status(), 404);
  assert.match((await bob.textContent('h1')) ?? '', /No such job/);
  await bob.goto(serviceUrl);
  const csrf = await csrfOf(bob);
  const status = await bob.evaluate(
    async ([path, token]) => (await fetch(path!, { headers: { 'x-kbatch-csrf': token! } })).status,
    [`${serviceUrl}api/v1/jobs/${jobName}`, csrf],
  );
  assert.is(status, 404);
});
isolation.run();

// ---------------------------------------------------------------------------------------------
const forgery = suite('forged logins and cross-site requests are refused');
let evil: Server | undefined;
forgery.after(() => new Promise<void>((resolve) => (evil ? evil.close(() => resolve()) : resolve())));
forgery('a callback with no login started in this browser is refused, and sets no session', async () => {
  const page = await newPage();
  const response = await page.goto(`${serviceUrl}oauth_callback?code=stolen-code&state=forged`);
  assert.is(response!.status(), 400);
  assert.match((await page.textContent('h1')) ?? '', /Login refused/);
  assert.not.ok(await sessionCookieOf(page));
});
forgery('a callback whose state does not match the one this browser started with is refused', async () => {
  const page = await newPage();
  // Starts a login (the sealed state cookie is set) without following it to the Hub.
  const start = await page.request.get(`${serviceUrl}login`, { maxRedirects: 0 });
  assert.is(start.status(), 302);
  assert.match(start.headers().location!, /\/hub\/api\/oauth2\/authorize\?.*state=/);
  const response = await page.goto(`${serviceUrl}oauth_callback?code=whatever&state=not-the-one`);
  assert.is(response!.status(), 400);
  assert.match((await page.textContent('.message')) ?? '', /does not match/);
  assert.not.ok(await sessionCookieOf(page));
});
forgery("a form another site posts with alice's cookie is refused, and creates no job", async () => {
  const before = (await aliceApi('GET', 'api/v1/jobs')).body.items.length;
  // Another port on the same host is another origin but the same site: the Lax cookie is sent, so only the anti-CSRF check stands in the way.
  evil = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<form id="f" method="POST" enctype="multipart/form-data" action="${serviceUrl}api/v1/jobs">
<input name="spec" value='{"name":"csrf","image":"busybox","command":["sh","-c","echo pwned"]}'></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise<void>((resolve) => evil!.listen(0, '127.0.0.1', resolve));
  const port = (evil.address() as { port: number }).port;
  const [response] = await Promise.all([
    alice.waitForResponse((r) => r.url() === `${serviceUrl}api/v1/jobs` && r.request().method() === 'POST'),
    alice.goto(`http://127.0.0.1:${port}/`),
  ]);
  assert.ok(
    response.request().headers().cookie?.includes('kbatch-session') ??
      (await response.request().allHeaders()).cookie?.includes('kbatch-session'),
    'the browser did send the cookie',
  );
  assert.is(response.status(), 403);
  assert.is((await response.json()).reason, 'Forbidden');
  assert.is((await aliceApi('GET', 'api/v1/jobs')).body.items.length, before);
});
forgery("the session cookie with a wrong or no anti-CSRF token is refused; with the page's own it works", async () => {
  await alice.goto(serviceUrl);
  const cookie = await sessionCookieOf(alice);
  const csrf = await csrfOf(alice);
  const call = (headers: Record<string, string>) =>
    fetch(`${serviceUrl}api/v1/jobs`, { headers: { cookie: `kbatch-session=${cookie!.value}`, ...headers } });
  assert.is((await call({})).status, 403);
  assert.is((await call({ 'x-kbatch-csrf': 'guess' })).status, 403);
  await bob.goto(serviceUrl);
  assert.is((await call({ 'x-kbatch-csrf': (await csrfOf(bob))! })).status, 403, "bob's token does not fit alice's session");
  assert.is((await call({ 'x-kbatch-csrf': csrf! })).status, 200);
  const tampered = cookie!.value.slice(0, -4) + (cookie!.value.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.is(
    (await fetch(`${serviceUrl}api/v1/jobs`, { headers: { cookie: `kbatch-session=${tampered}`, 'x-kbatch-csrf': csrf! } })).status,
    401,
  );
});
forgery('API clients with a token are unaffected by the web page', async () => {
  assert.is((await aliceApi('GET', 'api/v1/jobs')).status, 200);
  const root = await fetch(serviceUrl);
  assert.equal(await root.json(), { message: 'kbatch' });
});
forgery.run();

// ---------------------------------------------------------------------------------------------
const deleting = suite('deleting a job from its page');
deleting('Delete asks for confirmation, by keyboard too; Cancel and Escape keep the job', async () => {
  await alice.goto(`${serviceUrl}job/${jobName}`);
  await alice.click('text=Delete job');
  await alice.locator('dialog[open]').waitFor();
  assert.is(await alice.evaluate(() => document.activeElement?.textContent), 'Cancel', 'the safe choice has the focus');
  await alice.click('dialog >> text=Cancel');
  assert.is(await alice.locator('dialog[open]').count(), 0);
  await alice.focus('text=Delete job');
  await alice.keyboard.press('Enter');
  await alice.locator('dialog[open]').waitFor();
  await alice.keyboard.press('Escape');
  assert.is(await alice.locator('dialog[open]').count(), 0);
  assert.is((await aliceApi('GET', `api/v1/jobs/${jobName}`)).status, 200);
});
deleting('confirming deletes it and returns to the list, which no longer shows it; its outputs stay', async () => {
  await alice.click('text=Delete job');
  assert.not.ok(await alice.isChecked('#delete-outputs'), 'outputs are kept unless asked');
  await alice.click('dialog >> button.danger');
  await alice.waitForURL(/\?deleted=/);
  await alice.getByText(`Job ${jobName} was deleted.`).waitFor();
  await eventually('the job to be gone', async () => (await aliceApi('GET', `api/v1/jobs/${jobName}`)).status === 404);
  const outputs = await aliceApi('GET', `api/v1/jobs/${jobName}/outputs`);
  assert.is(outputs.status, 200, outputs.text);
  assert.is(outputs.body.files.length, 3);
});
deleting('ticking "Also delete its outputs" removes them with the job', async () => {
  const submitted = await aliceApi('POST', 'api/v1/jobs', { json: { name: 'with-outputs', image: 'busybox', command: ['true'] } });
  assert.is(submitted.status, 201, submitted.text);
  const name = submitted.body.name as string;
  mkdirSync(join(aliceVolume, 'outputs', name), { recursive: true });
  writeFileSync(join(aliceVolume, 'outputs', name, 'x.txt'), 'x');
  await alice.goto(`${serviceUrl}job/${name}`);
  await alice.click('text=Delete job');
  await alice.check('#delete-outputs');
  await alice.click('dialog >> button.danger');
  await alice.waitForURL(/\?deleted=/);
  assert.not.ok(existsSync(join(aliceVolume, 'outputs', name)));
  // A 404 once the Job is gone (foreground deletion takes a moment); no files at any time.
  const after = await aliceApi('GET', `api/v1/jobs/${name}/outputs`);
  assert.ok(after.status === 404 || (after.status === 200 && after.body.files.length === 0), after.text);
});
deleting.after(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser.close();
  await stack.stop();
  const keep = process.env.KBATCH_WEB_SCREENSHOTS;
  if (keep) {
    cpSync(screenshots, keep, { recursive: true });
    console.error(`[web] screenshots copied to ${keep}`);
  }
  rmSync(work, { recursive: true, force: true });
  clearTimeout(watchdog);
});
deleting.run();
