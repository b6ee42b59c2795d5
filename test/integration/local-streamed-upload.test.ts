// The local backend streams a bare tar or tar.gz body into its data dir, checked as it streams (the
// same rules as the Kubernetes backend), so clients can send the same request to both backends.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeTar } from '../../lib/uploads/archive.ts';
import { writeZip } from '../../cli/zip.ts';
import { startServer } from '../stack/server.ts';
import { client, eventually } from './helpers.ts';

const data = mkdtempSync(join(tmpdir(), 'kbatch-local-stream-'));
const server = await startServer({ KBATCH_BACKEND: 'local', KBATCH_AUTH: 'none', KBATCH_LOCAL_USER: 'dana', KBATCH_LOCAL_DIR: data });
const call = client(server.url);

async function postArchive(body: Buffer, type: string) {
  const response = await fetch(new URL('api/v1/uploads', server.url), {
    method: 'POST',
    headers: { 'content-type': type },
    body: new Uint8Array(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

const local = suite('a bare archive body on the local backend');
local.after(async () => {
  await server.stop();
  rmSync(data, { recursive: true, force: true });
});

local('a tar.gz body is stored and a job runs with it in /code', async () => {
  const tgz = gzipSync(writeTar([{ path: 'main.sh', type: 'file', mode: 0o755, data: Buffer.from('echo streamed-local\n') }]));
  const up = await postArchive(tgz, 'application/gzip');
  assert.is(up.status, 201, JSON.stringify(up.body));
  assert.is(up.body.files, 1);
  const job = await call('POST', 'api/v1/jobs', { json: { name: 'bare', image: 'x', command: ['sh', 'main.sh'], upload: up.body.upload } });
  assert.is(job.status, 201, job.text);
  const name = job.body.name as string;
  await eventually('job done', async () => (await call('GET', `api/v1/jobs/${name}`)).body.state === 'succeeded', 20_000);
  const logs = await fetch(new URL(`api/v1/jobs/${name}/logs`, server.url));
  assert.match(await logs.text(), /streamed-local/);
});

local('traversal in a bare tar is a 400', async () => {
  const res = await postArchive(writeTar([{ path: '../x', type: 'file', mode: 0o644, data: Buffer.from('x') }]), 'application/x-tar');
  assert.is(res.status, 400);
  assert.match(res.body.detail, /escapes the upload root/);
});

local('a multipart zip too large to hold streams to disk, and a submit with it runs with every byte in /code', async () => {
  const data = randomBytes(6 * 1024 * 1024);
  const zip = writeZip([
    { path: 'weights.bin', type: 'file', mode: 0o644, data },
    { path: 'main.sh', type: 'file', mode: 0o755, data: Buffer.from('sha256sum weights.bin\n') },
  ]);
  const form = new FormData();
  form.append('spec', JSON.stringify({ name: 'bigzip', image: 'x', command: ['sh', 'main.sh'] }));
  form.append('archive', new Blob([new Uint8Array(zip)]), 'code.zip');
  const job = await fetch(new URL('api/v1/jobs', server.url), { method: 'POST', body: form });
  const body = (await job.json()) as Record<string, any>;
  assert.is(job.status, 201, JSON.stringify(body));
  await eventually('job done', async () => (await call('GET', `api/v1/jobs/${body.name}`)).body.state === 'succeeded', 20_000);
  const logs = await fetch(new URL(`api/v1/jobs/${body.name}/logs`, server.url));
  assert.match(await logs.text(), createHash('sha256').update(data).digest('hex'));
});

local.run();
