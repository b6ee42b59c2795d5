/**
 * The embedded local backend behind the real Hub: what `npm start` runs on a machine without a
 * cluster, with Hub auth switched on. Jobs are local processes whose working directory holds the upload.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { namespaceForUser } from '../../lib/k8s/names.ts';
import { startHub } from '../stack/hub.ts';
import { freePort, startServer } from '../stack/server.ts';
import { client, eventually } from './helpers.ts';

const port = await freePort();
const hub = await startHub({ serviceUrl: `http://127.0.0.1:${port}` });
const dataDir = mkdtempSync(join(tmpdir(), 'kbatch-local-'));
const server = await startServer(
  { KBATCH_BACKEND: 'local', KBATCH_AUTH: 'hub', KBATCH_LOCAL_DIR: dataDir, JUPYTERHUB_API_URL: hub.apiUrl },
  { port },
);
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
  const created = await alice('POST', 'api/v1/jobs', {
    json: { name: 'local', image: 'python:3.12', command: ['python3', 'main.py'], env: { WHO: 'alice' }, upload: up.body.upload },
  });
  assert.is(created.status, 201, created.text);
  const name = created.body.name as string;
  const detail = await eventually('job done', async () => {
    const res = await alice('GET', `api/v1/jobs/${name}`);
    return ['succeeded', 'failed'].includes(res.body.state) ? res.body : undefined;
  });
  const logs = await alice('GET', `api/v1/jobs/${name}/logs`);
  assert.is(detail.state, 'succeeded', logs.text);
  const { createHash } = await import('node:crypto');
  assert.is(
    logs.text,
    `cwd-has ['data', 'main.py', 'pkg']\nblob ${blob.length} ${createHash('sha256').update(blob).digest('hex')}\nhello alice\n`,
  );
});
local('a followed log ends when the process ends', async () => {
  const created = await alice('POST', 'api/v1/jobs', {
    json: { name: 'tick', image: 'x', command: ['sh', '-c', 'for i in 1 2 3; do echo tick $i; sleep 0.5; done'] },
  });
  const res = await alice('GET', `api/v1/jobs/${created.body.name}/logs?follow=true`);
  assert.is(res.text, 'tick 1\ntick 2\ntick 3\n');
});
local("bob sees none of alice's local jobs", async () => {
  assert.is((await bob('GET', 'api/v1/jobs')).body.items.length, 0);
});
local('--tail gives the last lines of a job, also when following', async () => {
  const created = await alice('POST', 'api/v1/jobs', {
    json: { name: 'tail', image: 'x', command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line $i; done; sleep 2; echo line 6'] },
  });
  const name = created.body.name as string;
  // The tail is taken from the lines written when the request comes, as the kubelet does: wait for line 5.
  await eventually('five lines', async () => (await alice('GET', `api/v1/jobs/${name}/logs`)).text.includes('line 5'), 10_000, 100);
  const followed = await alice('GET', `api/v1/jobs/${name}/logs?follow=true&tail=2`);
  assert.is(followed.text, 'line 4\nline 5\nline 6\n');
  const done = await alice('GET', `api/v1/jobs/${name}/logs?tail=3`);
  assert.is(done.text, 'line 4\nline 5\nline 6\n');
});
local.run();

/** A GET with the path sent byte for byte: fetch and URL would resolve `..` before it leaves. */
function rawGet(path: string, token: string): Promise<{ status: number; text: string }> {
  const url = new URL(hub.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers: { authorization: `token ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

const traversal = suite("request names never become paths outside the caller's jobs");
traversal("traversal in job, pod and job_name values is NotFound (or nothing), never another user's data", async () => {
  const created = await alice('POST', 'api/v1/jobs', {
    json: { name: 'private', image: 'x', command: ['sh', '-c', 'echo alice-private-output'] },
  });
  const job = created.body.name as string;
  await eventually("alice's job done", async () => ['succeeded', 'failed'].includes((await alice('GET', `api/v1/jobs/${job}`)).body.state));
  const detail = await alice('GET', `api/v1/jobs/${job}`);
  const namespace = detail.body.namespace as string;
  const pod = detail.body.pods[0].name as string;
  const jobPath = `../../${namespace}/jobs/${job}`;
  const podPath = `../../${namespace}/jobs/${job}/pods/${pod}`;
  const encoded = (value: string) => value.replaceAll('/', '%2F');
  const base = '/services/kbatch/';
  const attempts = [
    ...[jobPath, `../${namespace}`, `..%2F..%2F${namespace}%2Fjobs%2F${job}`, `${job}%00`, `.${job}`, job.toUpperCase()].flatMap((name) => [
      `api/v1/jobs/${encoded(name)}`,
      `api/v1/jobs/${encoded(name)}/logs`,
      `jobs/${encoded(name)}`,
      `jobs/logs/${encoded(name)}`,
    ]),
    ...[podPath, `../${pod}`, `${encoded(podPath)}`, `..%2F${pod}`].flatMap((name) => [
      `pods/${encoded(name)}`,
      `pods/logs/${encoded(name)}`,
    ]),
    `api/v1/jobs/${job}/logs?pod=${encoded(podPath)}`,
  ];
  for (const path of attempts) {
    const res = await rawGet(base + path, hub.tokens.bob);
    assert.ok(res.status === 404 || res.status === 400, `${path}: ${res.status} ${res.text}`);
    assert.ok(!res.text.includes('alice-private-output') && !res.text.includes(`"${job}"`), `${path} leaked: ${res.text}`);
    assert.is(JSON.parse(res.text).status, res.status, `${path}: a JSON error body`);
  }
  // Bare dot segments are resolved by the proxy or the router before any handler sees them: no leak either way.
  for (const path of ['jobs/..', 'jobs/.', 'jobs/%2E%2E', 'pods/..', 'api/v1/jobs/%2e%2e/logs', `jobs/${job}/..`]) {
    const res = await rawGet(base + path, hub.tokens.bob);
    assert.ok(!res.text.includes('alice-private-output') && !res.text.includes(`"${job}"`), `${path} leaked: ${res.text}`);
  }
  for (const jobName of [jobPath, `..%2F..%2F${namespace}%2Fjobs%2F${job}`]) {
    const res = await rawGet(`${base}pods?job_name=${encoded(jobName)}`, hub.tokens.bob);
    assert.is(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).items, [], `pods?job_name=${jobName}`);
  }
  // Alice's job is untouched and still hers alone.
  assert.is((await alice('GET', `api/v1/jobs/${job}/logs`)).text, 'alice-private-output\n');
  assert.is((await bob('GET', `api/v1/jobs/${job}`)).status, 404);
});
traversal.run();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const owned = suite("a local namespace recorded as another user's is refused");
owned('bob, whose namespace directory records mallory as owner, can neither list nor submit', async () => {
  const namespace = namespaceForUser('bob');
  mkdirSync(join(dataDir, 'namespaces', namespace, 'jobs'), { recursive: true });
  const record = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace, annotations: { 'kbatch.jupyter.org/username': 'mallory' } },
  };
  writeFileSync(join(dataDir, 'namespaces', namespace, 'namespace.json'), JSON.stringify(record));
  const listed = await bob('GET', 'api/v1/jobs');
  assert.is(listed.status, 403, listed.text);
  assert.is(listed.body.reason, 'NamespaceOwnedByOther', listed.text);
  const submitted = await bob('POST', 'api/v1/jobs', { json: { name: 'x', image: 'x', command: ['true'] } });
  assert.is(submitted.status, 403, submitted.text);
  assert.is(submitted.body.reason, 'NamespaceOwnedByOther');
  assert.equal(readdirSync(join(dataDir, 'namespaces', namespace, 'jobs')), [], 'nothing was created there');
});
owned.run();

const restart = suite('the local server restarted on the same data');
restart('a job running when the server was killed is failed with ServerRestarted, and the list answers at once', async () => {
  const data = mkdtempSync(join(tmpdir(), 'kbatch-local-'));
  const env = { KBATCH_BACKEND: 'local', KBATCH_AUTH: 'none', KBATCH_LOCAL_USER: 'dana', KBATCH_LOCAL_DIR: data };
  const first = await startServer(env);
  let second: Awaited<ReturnType<typeof startServer>> | undefined;
  let leftover: number | undefined;
  try {
    const before = client(first.url);
    const created = await before('POST', 'api/v1/jobs', {
      json: { name: 'long', image: 'x', command: ['sh', '-c', 'echo tick; exec sleep 60'] },
    });
    assert.is(created.status, 201, created.text);
    const name = created.body.name as string;
    await eventually('job running', async () => (await before('GET', `api/v1/jobs/${name}`)).body.state === 'running');
    const pod = (await before('GET', `api/v1/jobs/${name}`)).body.pods[0].name as string;
    const namespace = (await before('GET', `api/v1/jobs/${name}`)).body.namespace as string;
    const record = join(data, 'namespaces', namespace, 'jobs', name, 'pods', `${pod}.process`);
    leftover = await eventually(
      'process recorded',
      async () => existsSync(record) && (JSON.parse(readFileSync(record, 'utf8')) as { pid: number }).pid,
    );
    const exited = new Promise((r) => first.process.once('exit', r));
    process.kill(-first.process.pid!, 'SIGKILL');
    await exited;

    second = await startServer(env);
    const started = Date.now();
    const list = await fetch(new URL('api/v1/jobs', second.url), { signal: AbortSignal.timeout(5000) });
    assert.is(list.status, 200);
    assert.ok(Date.now() - started < 5000, 'list answered promptly');
    const { items } = (await list.json()) as { items: { name: string; state: string; active: number }[] };
    assert.equal(
      items.map((job) => [job.name, job.state, job.active]),
      [[name, 'failed', 0]],
    );
    const after = client(second.url);
    const detail = await after('GET', `api/v1/jobs/${name}`);
    assert.is(detail.body.conditions[0].reason, 'ServerRestarted');
    assert.is(detail.body.pods[0].phase, 'Failed');
    // A follower of the dead job's log ends instead of waiting forever.
    const logs = await fetch(new URL(`api/v1/jobs/${name}/logs?follow=true`, second.url), { signal: AbortSignal.timeout(5000) });
    assert.match(await logs.text(), /^tick\n/);
    // The killed server's process (its own process group) was killed by the new one.
    await eventually('leftover process gone', async () => !isAlive(leftover!), 5000, 50);
  } finally {
    if (leftover && isAlive(leftover)) process.kill(-leftover, 'SIGKILL');
    await second?.stop();
    // The first server was killed: stop() would wait for an exit that already happened.
    if (first.process.exitCode === null && first.process.signalCode === null) await first.stop();
    rmSync(dirname(first.logFile), { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  }
});
restart.run();

const teardown = suite('teardown');
teardown('stops', async () => {
  await server.stop();
  await hub.stop();
  rmSync(dataDir, { recursive: true, force: true });
});
teardown.run();
