import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../../cli/app.ts';
import { ApiClient } from '../../cli/client.ts';
import { UnreachableError } from '../../cli/errors.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** A stand-in server answering each request with a fixed status and body, recording what it got. */
async function cannedServer(
  status: number,
  body: unknown,
  contentType = 'application/json',
): Promise<{ server: Server; url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    res.writeHead(status, { 'content-type': contentType });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/kbatch`, seen };
}

async function kbatch(argv: string[], env: Record<string, string>) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), 'kbatch-cli-client-')), ...env },
  });
  return { code, stdout, stderr };
}

const requests = suite('requests');
requests('go to paths relative to the URL, with "Authorization: token T"', async () => {
  const { server, url, seen } = await cannedServer(200, { items: [], continue: null });
  try {
    const r = await kbatch(['job', 'list', '--limit', '5'], { KBATCH_URL: url, JUPYTERHUB_API_TOKEN: 'secret-token' });
    assert.is(r.code, 0, r.stderr);
    assert.is(seen[0]!.url, '/services/kbatch/api/v1/jobs?limit=5');
    assert.is(seen[0]!.headers.authorization, 'token secret-token');
  } finally {
    server.close();
  }
});
requests('no token means no Authorization header (not "token undefined")', async () => {
  const { server, url, seen } = await cannedServer(200, { items: [], continue: null });
  try {
    await kbatch(['job', 'list'], { KBATCH_URL: url });
    assert.is(seen[0]!.headers.authorization, undefined);
  } finally {
    server.close();
  }
});
requests('job names are escaped in paths', async () => {
  const { server, url, seen } = await cannedServer(404, { detail: 'nope', status: 404 });
  try {
    await kbatch(['job', 'show', 'a/b'], { KBATCH_URL: url });
    assert.is(seen[0]!.url, '/services/kbatch/api/v1/jobs/a%2Fb');
  } finally {
    server.close();
  }
});
requests.run();

const errors = suite('HTTP errors become one actionable message and exit 1, chosen by reason');
const body = (status: number, reason: string, detail: string, field?: string) => ({ detail, status, reason, ...(field ? { field } : {}) });
const cases: [string, number, unknown, string[], RegExp[]][] = [
  [
    'Unauthorized',
    401,
    body(401, 'Unauthorized', 'Invalid or expired JupyterHub token'),
    ['job', 'list'],
    [
      /not logged in or token invalid \(HTTP 401: Invalid or expired JupyterHub token\)/,
      /hint: run kbatch configure --token TOKEN, or set \$JUPYTERHUB_API_TOKEN/,
    ],
  ],
  [
    'Forbidden',
    403,
    body(403, 'Forbidden', 'Token for user carol lacks the scope access:services!service=kbatch'),
    ['job', 'list'],
    [/permission denied \(HTTP 403\): Token for user carol/, /hint: .*access:services!service=kbatch/],
  ],
  [
    'NamespaceOwnedByOther',
    403,
    body(403, 'NamespaceOwnedByOther', 'namespace kbatch-x belongs to another user'),
    ['job', 'list'],
    [/permission denied \(HTTP 403\): namespace kbatch-x belongs/, /hint: .*ask your Hub admin/],
  ],
  [
    'NotFound on a job',
    404,
    body(404, 'NotFound', 'jobs.batch "ghost" not found'),
    ['job', 'show', 'ghost'],
    [/kbatch: job ghost not found/, /jobs\.batch "ghost" not found/],
  ],
  [
    'NoRoute',
    404,
    body(404, 'NoRoute', 'No route for GET /x/api/v1/jobs'),
    ['job', 'list'],
    [/not found at http/, /hint: check the kbatch URL/],
  ],
  [
    'NoPods',
    404,
    body(404, 'NoPods', 'No pods found for job j yet; it is still pending'),
    ['job', 'logs', 'j'],
    [/kbatch: No pods found for job j yet/, /hint: see why with kbatch job show j/],
  ],
  [
    'Conflict',
    409,
    body(409, 'Conflict', 'job x already exists'),
    ['job', 'submit', '-n', 'x', '--image', 'i'],
    [/conflict \(HTTP 409\): job x already exists/],
  ],
  [
    'UploadTooLarge',
    413,
    body(413, 'UploadTooLarge', 'Upload is larger than 268435456 bytes'),
    ['job', 'submit', '-n', 'x', '--image', 'i'],
    [/upload too large \(HTTP 413\): Upload is larger than 268435456 bytes/, /hint: leave large data out of --code/],
  ],
  [
    'BadRequest with a field',
    400,
    body(400, 'BadRequest', 'image: must be a non-empty image reference without spaces', 'image'),
    ['job', 'submit', '-n', 'x', '--image', 'i'],
    [/invalid request \(HTTP 400\): image: must be/],
  ],
  ['Internal', 500, body(500, 'Internal', 'Internal server error'), ['job', 'list'], [/server error \(HTTP 500\): Internal server error/]],
  [
    'Unavailable',
    503,
    body(503, 'Unavailable', 'JupyterHub API unreachable at http://hub'),
    ['job', 'list'],
    [/kbatch is unavailable \(HTTP 503\): JupyterHub API unreachable/, /hint: .*try again in a minute/],
  ],
  // The reason decides, never the prose: these details would fool the old message regexes.
  [
    'NotFound whose detail reads like a missing route',
    404,
    body(404, 'NotFound', 'No route for this job'),
    ['job', 'show', 'ghost'],
    [/kbatch: job ghost not found \(HTTP 404: No route for this job\)/],
  ],
  [
    'NoRoute whose detail reads like missing pods',
    404,
    body(404, 'NoRoute', 'No pods found'),
    ['job', 'logs', 'j'],
    [/not found at http/, /hint: check the kbatch URL/],
  ],
  [
    "an older server's 404 without a reason, about a named job",
    404,
    { detail: 'jobs.batch "ghost" not found', status: 404 },
    ['job', 'show', 'ghost'],
    [/kbatch: job ghost not found/],
  ],
  [
    'a reason this CLI does not know yet falls back on the status',
    403,
    body(403, 'SomethingNew', 'new refusal'),
    ['job', 'list'],
    [/permission denied \(HTTP 403\): new refusal/],
  ],
];
for (const [what, status, answer, argv, messages] of cases) {
  errors(what, async () => {
    const { server, url } = await cannedServer(status, answer);
    try {
      const r = await kbatch(argv, { KBATCH_URL: url });
      assert.is(r.code, 1);
      for (const message of messages) assert.match(r.stderr, message);
      assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      server.close();
    }
  });
}
errors("a proxy's HTML 404 (no reason) points at the URL", async () => {
  const { server, url } = await cannedServer(404, '<html><body><h1>404 Not Found</h1></body></html>', 'text/html');
  try {
    const r = await kbatch(['job', 'show', 'ghost'], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /not found at http.*404 Not Found/);
    assert.match(r.stderr, /hint: check the kbatch URL/);
  } finally {
    server.close();
  }
});
errors('an HTML error page from a proxy is shown as text, shortened', async () => {
  const { server, url } = await cannedServer(502, `<html><body><h1>502 Bad Gateway</h1>${'x'.repeat(1000)}</body></html>`, 'text/html');
  try {
    const r = await kbatch(['job', 'list'], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /kbatch is unavailable \(HTTP 502\): 502 Bad Gateway/);
    assert.match(r.stderr, /hint: .*try again/);
    assert.ok(r.stderr.length < 500);
  } finally {
    server.close();
  }
});
errors("a 200 that is not JSON (the Hub's login page) points at the URL", async () => {
  const { server, url } = await cannedServer(200, '<html><title>JupyterHub</title><body>Sign in</body></html>', 'text/html');
  try {
    const r = await kbatch(['job', 'list'], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /did not answer with JSON: JupyterHub Sign in/);
    assert.match(r.stderr, /hint: check the kbatch URL/);
  } finally {
    server.close();
  }
});
errors('a server that never answers times out instead of hanging', async () => {
  const server = createServer(() => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, undefined);
    await client.json('GET', 'api/v1/jobs', { timeoutMs: 200 });
    assert.unreachable('should have timed out');
  } catch (error) {
    assert.instance(error, UnreachableError);
    assert.match((error as Error).message, /no answer from kbatch at http:\/\/127\.0\.0\.1:\d+\/ in time/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
errors('a refused connection says the server cannot be reached', async () => {
  const { server, url } = await cannedServer(200, {});
  server.close();
  const r = await kbatch(['job', 'list'], { KBATCH_URL: url });
  assert.is(r.code, 1);
  assert.match(r.stderr, /^kbatch: cannot reach kbatch at http:\/\/127\.0\.0\.1:\d+\/services\/kbatch\/ \(ECONNREFUSED\)/);
});
errors.run();

const configure = suite('kbatch configure');
configure('checks the token with GET authorized, then saves URL and token owner-only', async () => {
  const { server, url, seen } = await cannedServer(200, { name: 'alice', groups: [], namespace: 'kbatch-alice' });
  try {
    const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-home-'));
    const r = await kbatch(['configure', '--url', url, '--token', 'abc'], { XDG_CONFIG_HOME: home });
    assert.is(r.code, 0, r.stderr);
    assert.is(seen[0]!.url, '/services/kbatch/authorized');
    assert.is(seen[0]!.headers.authorization, 'token abc');
    assert.match(r.stdout, /as alice \(namespace kbatch-alice\)/);
    const path = join(home, 'kbatch', 'config.json');
    assert.is(statSync(path).mode & 0o777, 0o600);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')), { kbatch_url: `${url}/`, token: 'abc' });
  } finally {
    server.close();
  }
});
configure('login URL is the same; a token from the environment is checked but not saved', async () => {
  const { server, url, seen } = await cannedServer(200, { name: 'alice' });
  try {
    const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-home-'));
    const r = await kbatch(['login', url], { XDG_CONFIG_HOME: home, JUPYTERHUB_API_TOKEN: 'from-env' });
    assert.is(r.code, 0, r.stderr);
    assert.is(seen[0]!.headers.authorization, 'token from-env');
    assert.equal(JSON.parse(readFileSync(join(home, 'kbatch', 'config.json'), 'utf8')), { kbatch_url: `${url}/`, token: null });
  } finally {
    server.close();
  }
});
configure('a rejected token writes nothing', async () => {
  const { server, url } = await cannedServer(401, { detail: 'Invalid or expired JupyterHub token', status: 401 });
  try {
    const home = mkdtempSync(join(tmpdir(), 'kbatch-cli-home-'));
    const r = await kbatch(['configure', '--url', url, '--token', 'bad'], { XDG_CONFIG_HOME: home });
    assert.is(r.code, 1);
    assert.match(r.stderr, /not logged in or token invalid/);
    assert.throws(() => statSync(join(home, 'kbatch', 'config.json')));
  } finally {
    server.close();
  }
});
configure('without a URL it is a usage error', async () => {
  const r = await kbatch(['configure'], {});
  assert.is(r.code, 2);
  assert.match(r.stderr, /missing URL/);
});
configure.run();

const pages = suite("error pages that are not kbatch's");
pages("the Hub's 503 page reads as its visible text, not its scripts", async () => {
  const page = `<!DOCTYPE html><html><head><title>JupyterHub</title><script>require.config({ urlArgs: "v=1" });</script></head>
    <body><script>window.jhdata = {};</script><div class="error"><h1>503 : Service Unavailable</h1><p>Your server is not running.</p></div></body></html>`;
  const { server, url } = await cannedServer(503, page, 'text/html');
  try {
    const r = await kbatch(['job', 'list'], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /^kbatch: kbatch is unavailable \(HTTP 503\): 503 : Service Unavailable Your server is not running\.\n/);
    assert.not.match(r.stderr, /require\.config|jhdata/);
  } finally {
    server.close();
  }
});
pages.run();
