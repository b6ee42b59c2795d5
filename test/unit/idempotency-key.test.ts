import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { idempotencyKeyFrom } from '../../lib/api/operations.ts';

const header = suite('Idempotency-Key header');
header('is optional', () => {
  assert.is(idempotencyKeyFrom({}), undefined);
});
header('takes 1 to 255 visible ASCII characters, as a UUID or a base64 token', () => {
  for (const key of ['3f2b6c1e-8d4a-4c3b-9a57-1e2d3c4b5a69', 'a', 'abc+/=_:.~', 'x'.repeat(255)])
    assert.is(idempotencyKeyFrom({ 'idempotency-key': key }), key);
});
header('anything else is a 400 naming the header', () => {
  for (const key of ['', 'x'.repeat(256), 'with space', 'tab\t', 'ünïcode', 'line\nbreak']) {
    assert.throws(
      () => idempotencyKeyFrom({ 'idempotency-key': key }),
      (error: Error & { status?: number; field?: string }) => error.status === 400 && error.field === 'Idempotency-Key',
    );
  }
});
header.run();

const local = suite('Idempotency-Key on the local backend');
local('a retry returns the first job, a different request with the key is a 409', async () => {
  const { mkdtempSync, readdirSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { submitJob } = await import('../../lib/api/operations.ts');
  const { createDeps } = await import('../../lib/app.ts');
  const { loadSettings } = await import('../../lib/config.ts');
  const { resolveUser } = await import('../../lib/auth/user.ts');
  const { parseJobSpec } = await import('../../lib/jobs/spec.ts');
  const { normalizeUpload } = await import('../../lib/uploads/archive.ts');
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-idem-'));
  const deps = await createDeps(loadSettings({ KBATCH_BACKEND: 'local', KBATCH_LOCAL_DIR: dir }));
  try {
    const user = resolveUser({ name: 'alice', groups: [], admin: false, scopes: [], token: 't' });
    const upload = () =>
      normalizeUpload([{ path: 'main.py', type: 'file', mode: 0o644, data: Buffer.from('print(1)') }], { maxBytes: 1e6, maxFiles: 10 });
    const spec = parseJobSpec({ name: 'once', image: 'python', command: ['true'] });
    const first = await submitJob(deps, user, spec, { upload: upload(), idempotencyKey: 'k-1' });
    const again = await submitJob(deps, user, spec, { upload: upload(), idempotencyKey: 'k-1' });
    assert.is(again.metadata!.uid, first.metadata!.uid);
    assert.equal(readdirSync(join(dir, 'namespaces', user.namespace, 'jobs')), [first.metadata!.name]);
    assert.equal(readdirSync(join(dir, 'uploads')).length, 1, 'the retry removed the code it stored');
    const other = parseJobSpec({ name: 'once', image: 'python', command: ['false'] });
    await submitJob(deps, user, other, { idempotencyKey: 'k-1' }).then(
      () => assert.unreachable('a second job'),
      (error: { status?: number }) => assert.is(error.status, 409),
    );
    // The job runs as a local process: let it finish before its directory goes.
    const { jobState } = await import('../../lib/jobs/views.ts');
    for (
      let i = 0;
      i < 100 && !['succeeded', 'failed'].includes(jobState(await deps.backend.getJob(user.namespace, first.metadata!.name!)));
      i++
    )
      await new Promise((r) => setTimeout(r, 50));
  } finally {
    await deps.backend.close?.();
    rmSync(dir, { recursive: true, force: true });
  }
});
local.run();
