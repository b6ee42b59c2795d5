/** Operator plumbing without a cluster: log levels, readiness caching, metric labels, the admin flag in the CLI. */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../../cli/app.ts';
import type { Deps } from '../../lib/api/deps.ts';
import { ConfigError, loadSettings } from '../../lib/config.ts';
import { createReadiness } from '../../lib/observability/health.ts';
import { kubernetesResource } from '../../lib/observability/metrics.ts';
import { logEnabled, setLogLevel } from '../../lib/observability/request-log.ts';

const settings = suite('operator settings');
settings('defaults: info, admin:users, readiness cached 5 s with a 2 s limit', () => {
  const s = loadSettings({ HOME: '/nonexistent' });
  assert.equal([s.logLevel, s.adminScope, s.readyCacheSeconds, s.readyTimeoutMs], ['info', 'admin:users', 5, 2000]);
});
settings('a level is one of four; anything else stops the start', () => {
  assert.is(loadSettings({ HOME: '/nonexistent', KBATCH_LOG_LEVEL: 'DEBUG' }).logLevel, 'debug');
  assert.throws(
    () => loadSettings({ HOME: '/nonexistent', KBATCH_LOG_LEVEL: 'verbose' }),
    (e: unknown) => e instanceof ConfigError && /KBATCH_LOG_LEVEL/.test(e.message),
  );
});
settings('the threshold lets through its level and above', () => {
  setLogLevel('warn');
  assert.equal((['debug', 'info', 'warn', 'error'] as const).map(logEnabled), [false, false, true, true]);
  setLogLevel('info');
});
settings.run();

const labels = suite('Kubernetes calls are labelled by resource kind, never by name');
labels('namespaced, cluster-wide, subresources and the namespace itself', () => {
  const cases: [string, string][] = [
    ['/apis/batch/v1/namespaces/kbatch-alice/jobs/secret-job-name', 'jobs'],
    ['/api/v1/namespaces/kbatch-alice/pods/p-1/log', 'pods/log'],
    ['/apis/batch/v1/jobs', 'jobs'],
    ['/api/v1/namespaces/kbatch-alice', 'namespaces'],
    ['/version', 'version'],
  ];
  for (const [path, resource] of cases) assert.is(kubernetesResource(path), resource, path);
});
labels.run();

const ready = suite('readiness: checked at most once per cache period, and says what failed without details');
function fakeDeps(ping: () => Promise<void>, auth: 'hub' | 'none' = 'hub'): Deps {
  const s = loadSettings({
    HOME: '/nonexistent',
    JUPYTERHUB_API_URL: 'http://hub.invalid/hub/api',
    KBATCH_READY_CACHE_SECONDS: '60',
    KBATCH_READY_TIMEOUT_MS: '50',
  });
  s.auth = auth;
  return { settings: s, backend: { kind: 'kubernetes', ping } } as unknown as Deps;
}
ready('concurrent probes share one check, and the verdict is reused', async () => {
  let pings = 0;
  let hubCalls = 0;
  const check = createReadiness(
    fakeDeps(async () => void pings++),
    (async () => (hubCalls++, new Response('{}'))) as typeof fetch,
  );
  const results = await Promise.all([check(), check(), check()]);
  await check();
  assert.ok(results.every((r) => r.ready));
  assert.equal([pings, hubCalls], [1, 1]);
});
ready('a Hub error status, a hang and a refused backend each fail with a short word', async () => {
  const down = await createReadiness(
    fakeDeps(async () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.1:443'))),
    (async () => new Response('', { status: 502 })) as typeof fetch,
  )();
  assert.equal(down, { ready: false, checks: { kubernetes: { ok: false, error: 'unreachable' }, hub: { ok: false, error: 'HTTP 502' } } });
  // AbortSignal.timeout's timer does not hold the process open (a server does); this test must.
  const hold = setInterval(() => undefined, 1000);
  try {
    const hung = await createReadiness(
      fakeDeps(async () => undefined),
      (() => new Promise(() => undefined)) as typeof fetch,
    )();
    assert.equal(hung.checks.hub, { ok: false, error: 'timeout' });
  } finally {
    clearInterval(hold);
  }
});
ready('without Hub auth only the backend is checked', async () => {
  const result = await createReadiness(
    fakeDeps(async () => undefined, 'none'),
    (() => assert.unreachable('the Hub was asked')) as unknown as typeof fetch,
  )();
  assert.equal(result, { ready: true, checks: { kubernetes: { ok: true } } });
});
ready.run();

const cli = suite('kbatch job list --all-users');
cli("asks for allUsers=true and shows each job's owner", async () => {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url!);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        items: [{ name: 'j1', namespace: 'kbatch-alice', user: 'alice', state: 'succeeded', createdAt: new Date().toISOString() }],
        continue: null,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const config = mkdtempSync(join(tmpdir(), 'kbatch-operator-'));
  let stdout = '';
  try {
    const code = await runCli(['job', 'list', '--all-users'], {
      stdout: { write: (t) => void (stdout += t), isTTY: false },
      stderr: { write: () => undefined, isTTY: false },
      env: {
        XDG_CONFIG_HOME: config,
        KBATCH_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/kbatch`,
        JUPYTERHUB_API_TOKEN: 't',
      },
    });
    assert.is(code, 0);
  } finally {
    server.close();
    rmSync(config, { recursive: true, force: true });
  }
  assert.is(seen[0], '/services/kbatch/api/v1/jobs?allUsers=true');
  assert.match(stdout, /^OWNER\s+NAME/);
  assert.match(stdout, /alice\s+j1/);
});
cli.run();
