import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadSettings } from '../../lib/config.ts';
import { toHttpError } from '../../lib/http/errors.ts';

const config = suite('settings');
config('defaults: local backend and no auth on a machine without a cluster', () => {
  const settings = loadSettings({ HOME: '/nonexistent' });
  assert.is(settings.backend, 'local');
  assert.is(settings.auth, 'none');
  assert.is(settings.prefix, '/services/kbatch/');
  assert.is(settings.host, '127.0.0.1');
});
config('a Hub URL switches auth on', () => {
  assert.is(loadSettings({ JUPYTERHUB_API_URL: 'http://hub:8081/hub/api' }).auth, 'hub');
});
config('the prefix is normalised', () => assert.is(loadSettings({ KBATCH_PREFIX: 'compute/services/kbatch' }).prefix, '/compute/services/kbatch/'));
config('bad values stop the start with a message', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT must be an integer/],
    [{ KBATCH_BACKEND: 'docker' }, /KBATCH_BACKEND/],
    [{ KBATCH_JOB_EXTRA_ENV: '{"A": 1}' }, /KBATCH_JOB_EXTRA_ENV/],
    [{ KBATCH_UPLOAD_SECRET: 'short' }, /at least 32/],
    [{ KBATCH_AUTH: 'none', KBATCH_BACKEND: 'kubernetes' }, /only allowed with the local backend/],
    [{ KBATCH_AUTH: 'none', KBATCH_HOST: '0.0.0.0' }, /loopback/],
    [{ KBATCH_CONFIGMAP_MAX_BYTES: String(2 * 1024 * 1024) }, /1 MiB ConfigMap limit/],
  ];
  for (const [env, message] of bad) assert.throws(() => loadSettings(env), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message));
});
config.run();

const errors = suite('toHttpError');
const kubernetes = (code: number, message: string) => toHttpError({ code, body: JSON.stringify({ kind: 'Status', message }) });
errors('relays what the user got wrong with Kubernetes\' message and a reason', () => {
  const cases: [number, number, string][] = [
    [422, 422, 'Invalid'],
    [404, 404, 'NotFound'],
    [409, 409, 'Conflict'],
    [400, 400, 'BadRequest'],
  ];
  for (const [code, status, reason] of cases) {
    const error = kubernetes(code, 'Job.batch "x" is invalid');
    assert.equal([error.status, error.reason, error.message], [status, reason, 'Job.batch "x" is invalid'], `Kubernetes ${code}`);
  }
});
errors('a refusal of the service\'s own identity is the service\'s 500, never the user\'s 403', () => {
  for (const code of [401, 403]) {
    const error = kubernetes(code, 'jobs.batch is forbidden: User "system:serviceaccount:kbatch:kbatch" cannot create');
    assert.is(error.status, 500);
    assert.is(error.reason, 'Internal');
    assert.match(error.message, /administrator/);
  }
});
errors('a refused connection to Kubernetes is 503 Unavailable', () => {
  const cause = Object.assign(new Error('connect'), { code: 'ECONNREFUSED' });
  const error = toHttpError(new TypeError('fetch failed', { cause }));
  assert.equal([error.status, error.reason], [503, 'Unavailable']);
});
errors('anything else is a 500 whose message leaks nothing', () => {
  const error = toHttpError(new Error('ENOENT: /app/dist/secret/path.js'));
  assert.equal([error.status, error.reason, error.message], [500, 'Internal', 'Internal server error']);
  assert.is(toHttpError({ code: 500, body: '<html>stack at /app/x.js</html>' }).message.includes('/app/'), false);
});
errors.run();

const start = suite('server start');
start('an invalid profile file stops the server with exit 2 and names the problem', async () => {
  const { spawnSync } = await import('node:child_process');
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'kbatch-cfg-')), 'profiles.yaml');
  writeFileSync(file, 'p: {image: x, hostNetwork: true}\n');
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'server.ts'], { env: { ...process.env, KBATCH_PROFILE_FILE: file, PORT: '0' }, encoding: 'utf8' });
  assert.is(result.status, 2);
  assert.match(result.stderr, /profile "p" has unknown key "hostNetwork"/);
});
start.run();
