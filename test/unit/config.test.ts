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
config('outputs are kept 30 days after their job by default; 0 or empty keeps them forever', () => {
  const retention = (value?: string) =>
    loadSettings({ HOME: '/nonexistent', ...(value === undefined ? {} : { KBATCH_OUTPUTS_RETENTION_SECONDS: value }) })
      .outputsRetentionSeconds;
  assert.is(retention(), 30 * 24 * 3600);
  assert.is(retention('3600'), 3600);
  assert.is(retention('0'), 0);
  assert.is(retention(''), 0);
  assert.throws(() => retention('-1'), /KBATCH_OUTPUTS_RETENTION_SECONDS must be an integer/);
  assert.throws(() => retention('30d'), /KBATCH_OUTPUTS_RETENTION_SECONDS must be an integer/);
});
config('a Hub URL switches auth on', () => {
  assert.is(loadSettings({ JUPYTERHUB_API_URL: 'http://hub:8081/hub/api' }).auth, 'hub');
});
config('the prefix is normalised', () =>
  assert.is(loadSettings({ KBATCH_PREFIX: 'compute/services/kbatch' }).prefix, '/compute/services/kbatch/'),
);
config('bad values stop the start with a message', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT must be an integer/],
    [{ KBATCH_BACKEND: 'docker' }, /KBATCH_BACKEND/],
    [{ KBATCH_JOB_EXTRA_ENV: '{"A": 1}' }, /KBATCH_JOB_EXTRA_ENV/],
    [{ PORT: '99999' }, /PORT must be an integer from 0 to 65535/],
    [{ PORT: '80.5' }, /PORT must be an integer/],
    [{ PORT: '-1' }, /PORT must be an integer/],
    [{ PORT: '0x50' }, /PORT must be an integer/],
    [{ KBATCH_AUTH_CACHE_SECONDS: '1e3' }, /KBATCH_AUTH_CACHE_SECONDS must be an integer/],
    [{ KBATCH_UPLOAD_SECRET: 'short' }, /at least 32 bytes/],
    [{ KBATCH_AUTH: 'none', KBATCH_BACKEND: 'kubernetes', KUBERNETES_SERVICE_HOST: '10.0.0.1' }, /only allowed with the local backend/],
    [{ KUBECONFIG: '/nonexistent/kubeconfig' }, /KUBECONFIG names a file that does not exist/],
    [{ KUBECONFIG: '/nonexistent/a:/nonexistent/b' }, /KUBECONFIG names no file that exists/],
    [{ KBATCH_BACKEND: 'kubernetes', HOME: '/nonexistent' }, /KBATCH_BACKEND=kubernetes needs a cluster/],
    [{ KBATCH_AUTH: 'none', KBATCH_HOST: '0.0.0.0' }, /loopback/],
    [{ KBATCH_CONFIGMAP_MAX_BYTES: String(2 * 1024 * 1024) }, /1 MiB ConfigMap limit/],
  ];
  for (const [env, message] of bad)
    assert.throws(
      () => loadSettings(env),
      (e: unknown) => e instanceof ConfigError && message.test((e as Error).message),
    );
});
config('the upload secret: placeholders and short keys are refused, real keys accepted', () => {
  const refused = [
    'replace-me-with-openssl-rand-hex-32-output-000000', // the one shipped in knative/config.yaml
    'changeme-changeme-changeme-changeme',
    'CHANGE_ME_to_a_long_random_value_please',
    'placeholder-placeholder-placeholder',
    'your-secret-key-goes-here-0123456789',
    'a'.repeat(64),
    'abababababababababababababababab',
    '0123456789abcdef0123456789abcde', // 31 bytes
  ];
  for (const secret of refused) assert.throws(() => loadSettings({ KBATCH_UPLOAD_SECRET: secret }), /KBATCH_UPLOAD_SECRET/, secret);
  const key = 'f3b1c9e07a5d4e2b8c6a1f0e9d7c5b3a2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c';
  assert.equal(loadSettings({ KBATCH_UPLOAD_SECRET: key }).uploadSecret, new TextEncoder().encode(key));
});
config('KUBECONFIG picks the Kubernetes backend only when the file exists (the first of a list)', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-kc-'));
  try {
    const file = join(dir, 'config');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\n');
    const settings = loadSettings({ KUBECONFIG: `${join(dir, 'missing')}:${file}` });
    assert.equal([settings.backend, settings.kubeconfig], ['kubernetes', file]);
    assert.is(loadSettings({ KUBECONFIG: file, KBATCH_BACKEND: 'local' }).backend, 'local');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
config('the Hub answer cache is 30 s by default', () => assert.is(loadSettings({}).authCacheSeconds, 30));
config.run();

const errors = suite('toHttpError');
const kubernetes = (code: number, message: string) => toHttpError({ code, body: JSON.stringify({ kind: 'Status', message }) });
errors("relays what the user got wrong with Kubernetes' message and a reason", () => {
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
errors("a refusal of the service's own identity is the service's 500, never the user's 403", () => {
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
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { ...process.env, KBATCH_PROFILE_FILE: file, PORT: '0' },
    encoding: 'utf8',
  });
  assert.is(result.status, 2);
  assert.match(result.stderr, /profile "p" has unknown key "hostNetwork"/);
});
start('every process stops on bad configuration with one line and exit 2, never a stack trace', async () => {
  const { spawn } = await import('node:child_process');
  const run = (entry: string, env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', entry], {
        env: { PATH: process.env.PATH, HOME: '/nonexistent', ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (code) => resolve({ code, stderr }));
    });
  const cases: [string, Record<string, string>, RegExp][] = [
    ['server.ts', { PORT: '99999' }, /PORT must be an integer/],
    ['server.ts', { KUBECONFIG: '/nonexistent/kubeconfig' }, /KUBECONFIG names a file that does not exist/],
    ['functions/jobs/index.ts', { KBATCH_BACKEND: 'kubernetes' }, /needs a cluster/],
    ['functions/submit/index.ts', { KBATCH_UPLOAD_SECRET: 'replace-me-with-openssl-rand-hex-32-output-000000' }, /placeholder/],
    ['functions/uploads/index.ts', { PORT: 'eighty' }, /PORT must be an integer/],
  ];
  const results = await Promise.all(cases.map(([entry, env]) => run(entry, env)));
  cases.forEach(([entry, , message], i) => {
    const { code, stderr } = results[i]!;
    assert.is(code, 2, `${entry}: ${stderr}`);
    assert.match(stderr, message);
    assert.is(stderr.trim().split('\n').length, 1, `${entry} printed more than one line:\n${stderr}`);
    assert.not.match(stderr, /\n\s+at /);
  });
});
start.run();
