/**
 * Operating kbatch through the real stack (Hub + CHP + control plane): the JSON request log, the
 * Prometheus /metrics endpoint, readiness that follows the Hub while liveness does not, and the
 * admin view of every user's jobs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startStack } from '../stack/stack.ts';
import { client, eventually, runProgram } from './helpers.ts';

const stack = await startStack({ KBATCH_READY_CACHE_SECONDS: '1', KBATCH_READY_TIMEOUT_MS: '500' });
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const bob = client(stack.serviceUrl, stack.hub.tokens.bob);
const anonymous = client(stack.serviceUrl);
/** Straight to the server, as the kubelet and Prometheus reach a pod. */
const direct = client(stack.server.url);

async function submit(as: typeof alice, name: string) {
  const res = await as('POST', 'api/v1/jobs', { json: { name, image: 'busybox', command: ['true'] } });
  assert.is(res.status, 201, res.text);
  return res.body.name as string;
}

type LogLine = Record<string, unknown>;
function requestLines(): LogLine[] {
  return readFileSync(stack.server.logFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine)
    .filter((line) => line.msg === 'request');
}

let aliceJob = '';
let bobJob = '';

// ---------------------------------------------------------------------------------------------
const log = suite('the request log: one JSON line per request, patterns not paths, no secrets');
log('each request is one JSON line with who, what, how it went and how long it took', async () => {
  const before = requestLines().length;
  aliceJob = await submit(alice, 'logged');
  assert.is((await alice('GET', 'api/v1/jobs?limit=0&note=query-value')).status, 400);
  assert.is(
    (await alice('GET', 'api/v1/jobs/no-such-job', { headers: { cookie: 'jupyterhub-session-id=cookie-secret-value' } })).status,
    404,
  );
  assert.is((await anonymous('GET', 'api/v1/jobs')).status, 401);
  // A line is written when the response closes, which may be just after the client has its answer.
  const lines = await eventually('the four request lines', async () => {
    const all = requestLines().slice(before);
    return [201, 400, 404, 401].every((status) => all.some((line) => line.status === status)) ? all : undefined;
  });
  for (const line of lines) {
    for (const field of ['time', 'level', 'method', 'route', 'status', 'durationMs'])
      assert.ok(field in line, `${field} in ${JSON.stringify(line)}`);
    assert.type(line.durationMs, 'number');
    assert.type(line.bytesOut, 'number');
  }
  const submitLine = lines.find((l) => l.method === 'POST')!;
  assert.equal(
    [submitLine.route, submitLine.status, submitLine.user, submitLine.job, submitLine.level],
    ['/api/v1/jobs', 201, 'alice', aliceJob, 'info'],
  );
  assert.ok((submitLine.bytesIn as number) > 0, 'the body is counted');
  const missing = lines.find((l) => l.status === 404)!;
  assert.equal(
    [missing.route, missing.job, missing.reason, missing.kubernetesReason],
    ['/api/v1/jobs/:name', 'no-such-job', 'NotFound', 'NotFound'],
  );
  const refused = lines.find((l) => l.status === 401)!;
  assert.equal([refused.route, refused.user, refused.reason], ['/api/v1/jobs', undefined, 'Unauthorized']);
});
log('never the token, a cookie, the query or the raw path', async () => {
  const text = readFileSync(stack.server.logFile, 'utf8');
  for (const token of Object.values(stack.hub.tokens)) assert.not.ok(text.includes(token), 'a token is in the log');
  assert.not.ok(text.includes('cookie-secret-value'));
  assert.not.ok(text.includes('query-value'));
  assert.not.ok(requestLines().some((line) => String(line.route).includes('?') || String(line.route).includes('no-such-job')));
});
log('probes and scrapes are debug lines, left out at the default level', async () => {
  assert.is((await direct('GET', 'healthz')).status, 200);
  assert.is((await direct('GET', 'metrics')).status, 200);
  await alice('GET', 'authorized');
  await eventually('the authorized line', async () => requestLines().some((l) => l.route === '/authorized'));
  assert.not.ok(requestLines().some((l) => l.route === '/healthz' || l.route === '/metrics'));
});
log.run();

// ---------------------------------------------------------------------------------------------
const metrics = suite('/metrics: Prometheus series for requests and dependencies, no user data');
metrics('after traffic, requests, Hub and Kubernetes latency, the auth cache and uploads have series', async () => {
  const form = new FormData();
  form.append('file', new Blob(['print(1)\n']), 'main.py');
  assert.is((await alice('POST', 'api/v1/uploads', { form })).status, 201);
  const res = await direct('GET', 'metrics');
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = res.text;
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  assert.ok(
    value(/^kbatch_http_requests_total\{method="POST",route="\/api\/v1\/jobs",status="201"\} (\d+)/m) >= 1,
    'submit counted by route pattern',
  );
  assert.ok(value(/^kbatch_http_requests_total\{method="GET",route="\/api\/v1\/jobs\/:name",status="404"\} (\d+)/m) >= 1);
  assert.ok(value(/^kbatch_http_request_duration_seconds_count\{method="POST",route="\/api\/v1\/jobs",status="201"\} (\d+)/m) >= 1);
  assert.ok(value(/^kbatch_hub_request_duration_seconds_count\{endpoint="\/user",outcome="200"\} (\d+)/m) >= 1, 'Hub lookups timed');
  assert.ok(
    value(/^kbatch_kubernetes_request_duration_seconds_count\{method="POST",resource="jobs",outcome="201"\} (\d+)/m) >= 1,
    'Kubernetes calls timed',
  );
  assert.ok(value(/^kbatch_kubernetes_request_duration_seconds_count\{method="GET",resource="jobs",outcome="404"\} (\d+)/m) >= 1);
  assert.ok(value(/^kbatch_auth_cache_total\{result="hit"\} (\d+)/m) >= 1, 'cache hits');
  assert.ok(value(/^kbatch_auth_cache_total\{result="miss"\} (\d+)/m) >= 1, 'cache misses');
  assert.ok(value(/^kbatch_upload_bytes_total (\d+)/m) > 0, 'upload bytes');
  assert.is(value(/^kbatch_open_log_streams (\d+)/m), 0);
  assert.ok(value(/^kbatch_process_resident_memory_bytes (\d+)/m) > 0, 'process metrics');
});
metrics('a log stream is counted while it is open', async () => {
  const controller = new AbortController();
  const stream = await fetch(new URL(`api/v1/jobs/${aliceJob}/logs?follow=true`, stack.serviceUrl), {
    headers: { authorization: `token ${stack.hub.tokens.alice}` },
    signal: controller.signal,
  });
  try {
    const text = (await direct('GET', 'metrics')).text;
    // The job may already be over (then the stream ends by itself); while it is open it counts.
    assert.match(text, /^kbatch_open_log_streams [01]$/m);
  } finally {
    controller.abort();
    await stream.body?.cancel().catch(() => undefined);
  }
  await eventually('the stream to be counted out', async () => /^kbatch_open_log_streams 0$/m.test((await direct('GET', 'metrics')).text));
});
metrics('no user, job name, namespace or token in any series, and no authentication needed', async () => {
  const res = await anonymous('GET', 'metrics');
  assert.is(res.status, 200);
  for (const secret of [...Object.values(stack.hub.tokens), 'alice', aliceJob, 'kbatch-alice', 'no-such-job'])
    assert.not.ok(res.text.includes(secret), `${secret} in /metrics`);
});
metrics.run();

// ---------------------------------------------------------------------------------------------
const admin = suite("the admin view: every user's jobs, for a token with the admin scope only");
admin("a Hub admin's token lists alice's and bob's jobs with their owners", async () => {
  bobJob = await submit(bob, 'bobs');
  const dora = client(stack.serviceUrl, await stack.hub.createToken('dora'));
  const res = await dora('GET', 'api/v1/jobs?allUsers=true');
  assert.is(res.status, 200, res.text);
  const owners = new Map(
    (res.body.items as { name: string; user: string; namespace: string }[]).map((job) => [`${job.namespace}/${job.name}`, job.user]),
  );
  assert.is(owners.get(`kbatch-alice/${aliceJob}`), 'alice');
  assert.is(owners.get(`kbatch-bob/${bobJob}`), 'bob');
});
admin('pages of the admin view follow each other without repeats', async () => {
  const dora = client(stack.serviceUrl, await stack.hub.createToken('dora'));
  const first = await dora('GET', 'api/v1/jobs?allUsers=true&limit=1');
  assert.is(first.body.items.length, 1);
  assert.type(first.body.continue, 'string');
  const second = await dora('GET', `api/v1/jobs?allUsers=true&limit=1&continue=${encodeURIComponent(first.body.continue)}`);
  assert.is(second.body.items.length, 1);
  assert.is.not(second.body.items[0].name, first.body.items[0].name);
});
admin("a normal user asking for every user's jobs is 403, and her own list stays her own", async () => {
  const res = await alice('GET', 'api/v1/jobs?allUsers=true');
  assert.is(res.status, 403);
  assert.match(res.body.detail, /admin:users/);
  const own = await alice('GET', 'api/v1/jobs');
  assert.ok(own.body.items.every((job: { user: string }) => job.user === 'alice'));
});
admin("an admin's token narrowed to kbatch access only does not carry the admin view", async () => {
  const narrow = client(stack.serviceUrl, await stack.hub.createToken('dora', { scopes: ['access:services!service=kbatch'] }));
  assert.is((await narrow('GET', 'api/v1/jobs')).status, 200);
  assert.is((await narrow('GET', 'api/v1/jobs?allUsers=true')).status, 403);
});
admin('kbatch job list --all-users shows the owners to an admin and is refused to alice', async () => {
  const home = mkdtempSync(join(tmpdir(), 'kbatch-operator-cli-'));
  const cli = (token: string) =>
    runProgram([process.execPath, resolve(import.meta.dirname, '../../bin/kbatch.mjs'), 'job', 'list', '--all-users'], {
      cwd: home,
      env: {
        PATH: process.env.PATH,
        HOME: home,
        XDG_CONFIG_HOME: join(home, '.config'),
        KBATCH_URL: stack.serviceUrl,
        JUPYTERHUB_API_TOKEN: token,
      },
    });
  try {
    const asDora = await cli(await stack.hub.createToken('dora'));
    assert.is(asDora.code, 0, asDora.stderr);
    assert.match(asDora.stdout, /^OWNER\s+NAME/);
    assert.match(asDora.stdout, new RegExp(`^bob\\s+${bobJob}\\s`, 'm'));
    assert.match(asDora.stdout, new RegExp(`^alice\\s+${aliceJob}\\s`, 'm'));
    const asAlice = await cli(stack.hub.tokens.alice);
    assert.is.not(asAlice.code, 0);
    assert.match(asAlice.stderr, /HTTP 403.*admin:users/);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
admin.run();

// ---------------------------------------------------------------------------------------------
const health = suite('readiness follows the Hub and the Kubernetes API; liveness does not');
health('ready while both answer', async () => {
  const res = await direct('GET', 'readyz');
  assert.is(res.status, 200, res.text);
  assert.equal(res.body, { ready: true, checks: { kubernetes: { ok: true }, hub: { ok: true } } });
});
health('a hung Hub makes the server unready (503) while /healthz stays 200, and it recovers', async () => {
  stack.hub.pause();
  try {
    const down = await eventually(
      'readyz to fail',
      async () => {
        const res = await direct('GET', 'readyz');
        return res.status === 503 ? res : undefined;
      },
      15_000,
    );
    assert.equal(down.body.checks.hub, { ok: false, error: 'timeout' });
    assert.equal(down.body.checks.kubernetes, { ok: true });
    assert.not.ok(down.text.includes('127.0.0.1'), 'no URL in the unauthenticated answer');
    const live = await direct('GET', 'healthz');
    assert.is(live.status, 200);
  } finally {
    stack.hub.resume();
  }
  await eventually('readyz to recover', async () => (await direct('GET', 'readyz')).status === 200, 20_000);
});
health.after(async () => {
  stack.hub.resume();
  await stack.stop();
});
health.run();
