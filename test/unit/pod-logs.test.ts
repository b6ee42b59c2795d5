/**
 * Pod logs from the Kubernetes backend against a fake API server (plain HTTP): what is asked of the
 * API server while a log is fetched or followed, and when a followed log ends.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KubernetesBackend } from '../../lib/backend/kubernetes.ts';
import { PodLogStream } from '../../lib/k8s/log-stream.ts';

interface FakeApi {
  server: Server;
  /** Paths requested, in order. */
  requests: string[];
  phase: string;
  /** The open follow response, to write lines into. */
  follower?: ServerResponse;
  backend: KubernetesBackend;
  dir: string;
}

async function startFakeApi(log: string): Promise<FakeApi> {
  const api = { requests: [] as string[], phase: 'Running' } as FakeApi;
  api.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    api.requests.push(req.url!);
    const url = new URL(req.url!, 'http://x');
    if (url.pathname.endsWith('/log')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      if (url.searchParams.get('follow') === 'true') {
        // Like the API server, an empty log sends no answer (not even headers) until its first bytes.
        if (log) res.write(log);
        api.follower = res;
      } else res.end(log);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p', namespace: 'ns' },
        spec: { containers: [{ name: 'main' }] },
        status: { phase: api.phase },
      }),
    );
  });
  api.server.listen(0, '127.0.0.1');
  await once(api.server, 'listening');
  const port = (api.server.address() as { port: number }).port;
  api.dir = mkdtempSync(join(tmpdir(), 'kbatch-podlogs-'));
  const kubeconfig = join(api.dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`,
  );
  api.backend = new KubernetesBackend({
    kubeconfig,
    configMapMaxBytes: 1,
    helperImage: '',
    uploadPvcSize: '',
    uploadPvcAccessMode: '',
    logPollSeconds: 1,
    uploadTtlSeconds: 60,
    volumeHelperIdleSeconds: 300,
  });
  return api;
}

async function stopFakeApi(api: FakeApi): Promise<void> {
  api.follower?.destroy();
  await api.backend.close();
  api.server.closeAllConnections();
  api.server.close();
  rmSync(api.dir, { recursive: true, force: true });
}

async function text(stream: Readable): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += chunk.toString();
  return out;
}

const podReads = (api: FakeApi) => api.requests.filter((path) => path === '/api/v1/namespaces/ns/pods/p').length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const logs = suite('pod logs from the API server');

logs('a fetch names the container from the pod, or reads no pod when the caller names it', async () => {
  const api = await startFakeApi('a\nb\n');
  try {
    assert.is(await text(await api.backend.podLogs('ns', 'p', { follow: false }, new AbortController().signal)), 'a\nb\n');
    assert.equal(api.requests, ['/api/v1/namespaces/ns/pods/p', '/api/v1/namespaces/ns/pods/p/log?container=main']);
    api.requests.length = 0;
    assert.is(
      await text(await api.backend.podLogs('ns', 'p', { follow: false, container: 'job' }, new AbortController().signal)),
      'a\nb\n',
    );
    assert.equal(api.requests, ['/api/v1/namespaces/ns/pods/p/log?container=job']);
  } finally {
    await stopFakeApi(api);
  }
});

logs('a follow reads the pod phase only when the log goes quiet, and ends once the pod has finished', async () => {
  const api = await startFakeApi('first\n');
  try {
    const stream = await api.backend.podLogs('ns', 'p', { follow: true, container: 'job' }, new AbortController().signal);
    const received = text(stream);
    // Lines keep flowing for 2.5 poll intervals: the pod is alive, nothing is asked.
    for (let i = 0; i < 25; i++) {
      api.follower!.write(`line ${i}\n`);
      await sleep(100);
    }
    assert.is(podReads(api), 0, 'no pod read while bytes flow');
    // Quiet, still running: the phase is read within two intervals, and the stream stays open.
    await sleep(2300);
    assert.ok(podReads(api) >= 1, 'the phase is read once the log is quiet');
    api.follower!.write('last\n');
    api.phase = 'Succeeded';
    const out = await received;
    assert.ok(out.startsWith('first\nline 0\n') && out.endsWith('line 24\nlast\n'), out);
  } finally {
    await stopFakeApi(api);
  }
});

logs('quiet followers of one pod share their phase reads', async () => {
  const api = await startFakeApi('first\n');
  try {
    const controller = new AbortController();
    const streams = await Promise.all(
      Array.from({ length: 10 }, () => api.backend.podLogs('ns', 'p', { follow: true, container: 'job' }, controller.signal)),
    );
    for (const stream of streams) {
      stream.on('error', () => undefined);
      stream.resume();
    }
    await sleep(2500);
    // Ten followers, two quiet checks each by now: without sharing that would be up to 20 reads.
    assert.ok(podReads(api) >= 1 && podReads(api) <= 3, `${podReads(api)} pod reads`);
    controller.abort();
  } finally {
    await stopFakeApi(api);
  }
});

logs('a follow of a quiet pod is answered at once; its bytes follow when the API server has some', async () => {
  const api = await startFakeApi('');
  try {
    const started = Date.now();
    const stream = await api.backend.podLogs('ns', 'p', { follow: true, container: 'job' }, new AbortController().signal);
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
    const received = text(stream);
    await sleep(200);
    api.follower!.write('late\n');
    api.phase = 'Succeeded';
    assert.is(await received, 'late\n');
  } finally {
    await stopFakeApi(api);
  }
});

logs('a follow whose client goes away closes its request to the API server', async () => {
  const api = await startFakeApi('first\n');
  try {
    const controller = new AbortController();
    const stream = await api.backend.podLogs('ns', 'p', { follow: true, container: 'job' }, controller.signal);
    const failed = once(stream, 'error');
    stream.resume();
    await sleep(50);
    const closed = once(api.follower!, 'close');
    controller.abort();
    await closed;
    assert.match(String(((await failed) as Error[])[0]), /abort/i);
    assert.is(podReads(api), 0);
  } finally {
    await stopFakeApi(api);
  }
});

const batching = suite('PodLogStream');

batching('chunks arriving in one turn of the event loop are passed on as one', async () => {
  const source = new PassThrough();
  const stream = new PodLogStream(() => undefined);
  stream.attach(source);
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  await sleep(10);
  for (let i = 0; i < 100; i++) source.write(`line ${i}\n`);
  await sleep(20);
  source.write('later\n');
  source.end();
  await once(stream, 'end');
  assert.is(chunks.join(''), Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join('') + 'later\n');
  assert.ok(chunks.length <= 3, `${chunks.length} chunks`);
});

batching('a reader that does not read stops the source (backpressure)', async () => {
  let produced = 0;
  const source = new Readable({
    read() {
      produced++;
      this.push(Buffer.alloc(16 * 1024));
    },
  });
  const stream = new PodLogStream(() => undefined);
  stream.attach(source);
  stream.pause();
  stream.read(0);
  await sleep(100);
  // Bounded by the high-water marks of the two streams, not by how much the source has.
  assert.ok(produced < 40, `${produced} chunks produced for a reader that never reads`);
  stream.destroy();
});

batching('finish() ends cleanly after what arrived; a later abort error of the source is ignored', async () => {
  const source = new PassThrough();
  let closed = 0;
  const stream = new PodLogStream(() => closed++);
  stream.attach(source);
  const out = text(stream);
  source.write('a\n');
  stream.finish();
  source.destroy(new Error('aborted'));
  assert.is(await out, 'a\n');
  assert.ok(closed >= 1);
});

batching('an error of the source before the end reaches the reader', async () => {
  const source = new PassThrough();
  const stream = new PodLogStream(() => undefined);
  stream.attach(source);
  const out = text(stream);
  source.write('a\n');
  setTimeout(() => source.destroy(new Error('connection reset')), 20);
  await out.then(
    () => assert.unreachable('should fail'),
    (error: Error) => assert.match(error.message, /connection reset/),
  );
});

logs.run();
batching.run();
