/**
 * The embedded local backend behind the real Hub: what `npm start` runs on a machine without a
 * cluster, with Hub auth switched on. Jobs are local processes whose working directory holds the upload.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startHub } from '../stack/hub.ts';
import { freePort, startServer } from '../stack/server.ts';
import { client, eventually } from './helpers.ts';

const port = await freePort();
const hub = await startHub({ serviceUrl: `http://127.0.0.1:${port}` });
const server = await startServer({ KBATCH_BACKEND: 'local', KBATCH_AUTH: 'hub', KBATCH_LOCAL_DIR: mkdtempSync(join(tmpdir(), 'kbatch-local-')), JUPYTERHUB_API_URL: hub.apiUrl }, { port });
const serviceUrl = `${hub.url}/services/kbatch/`;
const alice = client(serviceUrl, hub.tokens.alice);
const bob = client(serviceUrl, hub.tokens.bob);

const local = suite('local backend through the Hub');
local('a 5 MB multi-file directory upload runs python main.py from its directory', async () => {
  const form = new FormData();
  const main = [
    'import hashlib, os, pathlib',
    'data = pathlib.Path("data/blob.bin").read_bytes()',
    'print("cwd-has", sorted(p.name for p in pathlib.Path(".").iterdir()))',
    'print("blob", len(data), hashlib.sha256(data).hexdigest())',
    'from pkg.util import greet',
    'print(greet(os.environ["WHO"]))',
  ].join('\n');
  const blob = randomBytes(5 * 1024 * 1024);
  form.append('file', new Blob([main]), 'main.py');
  form.append('file', new Blob(['']), 'pkg/__init__.py');
  form.append('file', new Blob(['def greet(who):\n    return f"hello {who}"\n']), 'pkg/util.py');
  form.append('file', new Blob([new Uint8Array(blob)]), 'data/blob.bin');
  const up = await alice('POST', 'api/v1/uploads', { form });
  assert.is(up.status, 201, up.text);
  assert.is(up.body.files, 4);
  assert.is(up.body.storage, 'local');
  const created = await alice('POST', 'api/v1/jobs', { json: { name: 'local', image: 'python:3.12', command: ['python3', 'main.py'], env: { WHO: 'alice' }, upload: up.body.upload } });
  assert.is(created.status, 201, created.text);
  const name = created.body.name as string;
  const detail = await eventually('job done', async () => {
    const res = await alice('GET', `api/v1/jobs/${name}`);
    return ['succeeded', 'failed'].includes(res.body.state) ? res.body : undefined;
  });
  const logs = await alice('GET', `api/v1/jobs/${name}/logs`);
  assert.is(detail.state, 'succeeded', logs.text);
  const { createHash } = await import('node:crypto');
  assert.is(logs.text, `cwd-has ['data', 'main.py', 'pkg']\nblob ${blob.length} ${createHash('sha256').update(blob).digest('hex')}\nhello alice\n`);
});
local('a followed log ends when the process ends', async () => {
  const created = await alice('POST', 'api/v1/jobs', { json: { name: 'tick', image: 'x', command: ['sh', '-c', 'for i in 1 2 3; do echo tick $i; sleep 0.5; done'] } });
  const res = await alice('GET', `api/v1/jobs/${created.body.name}/logs?follow=true`);
  assert.is(res.text, 'tick 1\ntick 2\ntick 3\n');
});
local('bob sees none of alice\'s local jobs', async () => {
  assert.is((await bob('GET', 'api/v1/jobs')).body.items.length, 0);
});
local.run();

const teardown = suite('teardown');
teardown('stops', async () => {
  await server.stop();
  await hub.stop();
});
teardown.run();
