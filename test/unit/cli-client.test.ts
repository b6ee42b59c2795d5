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
async function cannedServer(status: number, body: unknown, contentType = 'application/json'): Promise<{ server: Server; url: string; seen: Seen[] }> {
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

const errors = suite('HTTP errors become one actionable message and exit 1');
const cases: [string, number, unknown, string[], RegExp[]][] = [
  ['401', 401, { detail: 'Invalid or expired JupyterHub token', status: 401 }, ['job', 'list'], [/not logged in or token invalid: run kbatch configure \/ set JUPYTERHUB_API_TOKEN/, /Invalid or expired JupyterHub token/]],
  ['403', 403, { detail: 'Token for user carol lacks the scope access:services!service=kbatch', status: 403 }, ['job', 'list'], [/permission denied \(HTTP 403\): Token for user carol/, /hint: .*access:services!service=kbatch/]],
  ['404 on a job', 404, { detail: 'jobs.batch "ghost" not found', status: 404 }, ['job', 'show', 'ghost'], [/kbatch: job ghost not found/, /jobs\.batch "ghost" not found/]],
  ['404 from the router', 404, { detail: 'No route for GET /x/api/v1/jobs', status: 404 }, ['job', 'list'], [/not found at http/, /check the kbatch URL/]],
  ['404 for logs before any pod ran', 404, { detail: 'No pods found for job j yet; it is still pending', status: 404 }, ['job', 'logs', 'j'], [/kbatch: No pods found for job j yet/]],
  ['409', 409, { detail: 'job x already exists', status: 409 }, ['job', 'submit', '-n', 'x', '--image', 'i'], [/conflict \(HTTP 409\): job x already exists/]],
  ['413', 413, { detail: 'Upload is larger than 268435456 bytes', status: 413 }, ['job', 'submit', '-n', 'x', '--image', 'i'], [/upload too large \(HTTP 413\): Upload is larger than 268435456 bytes/]],
  ['400 with a field', 400, { detail: 'image: must be a non-empty image reference without spaces', status: 400, field: 'image' }, ['job', 'submit', '-n', 'x', '--image', 'i'], [/invalid request \(HTTP 400\): image: must be/]],
  ['500', 500, { detail: 'Internal server error', status: 500 }, ['job', 'list'], [/server error \(HTTP 500\): Internal server error/]],
  ['503 from the Hub', 503, { detail: 'JupyterHub API unreachable at http://hub', status: 503 }, ['job', 'list'], [/server error \(HTTP 503\): JupyterHub API unreachable/]],
];
for (const [what, status, body, argv, messages] of cases) {
  errors(what, async () => {
    const { server, url } = await cannedServer(status, body);
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
errors('an HTML error page from a proxy is shown as text, shortened', async () => {
  const { server, url } = await cannedServer(502, `<html><body><h1>502 Bad Gateway</h1>${'x'.repeat(1000)}</body></html>`, 'text/html');
  try {
    const r = await kbatch(['job', 'list'], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /server error \(HTTP 502\): 502 Bad Gateway/);
    assert.ok(r.stderr.length < 500);
  } finally {
    server.close();
  }
});
errors('a 200 that is not JSON (the Hub\'s login page) points at the URL', async () => {
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
