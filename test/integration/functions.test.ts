/**
 * The deployable shape: the three functions bundled with esbuild, each its own process (as each is
 * its own Knative Service), behind the real nginx gateway config from knative/gateway.yaml, behind
 * the real Hub, on the real control plane. No state is shared except Kubernetes and the signing key.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { streamAbortMarker } from '../../lib/contract.ts';
import { bundle } from '../../scripts/bundle.ts';
import { startCluster } from '../stack/cluster.ts';
import { startGateway } from '../stack/gateway.ts';
import { startHub } from '../stack/hub.ts';
import { freePort, startServer, type KbatchServer } from '../stack/server.ts';
import { serverSettings } from '../stack/stack.ts';
import { client, codeForm, eventually } from './helpers.ts';

const dist = mkdtempSync(join(tmpdir(), 'kbatch-dist-'));
process.once('exit', () => rmSync(dist, { recursive: true, force: true }));
await bundle(dist);
const cluster = await startCluster();
const gatewayPort = await freePort();
const hub = await startHub({ serviceUrl: `http://127.0.0.1:${gatewayPort}` });
const env = {
  ...serverSettings,
  KUBECONFIG: cluster.kbatchKubeconfig,
  JUPYTERHUB_API_URL: hub.apiUrl,
  KBATCH_SHUTDOWN_GRACE_SECONDS: '20',
};
const functions: Record<'submit' | 'uploads' | 'jobs', KbatchServer> = {
  submit: await startServer(env, { entry: [join(dist, 'submit.mjs')] }),
  uploads: await startServer(env, { entry: [join(dist, 'uploads.mjs')] }),
  jobs: await startServer(env, { entry: [join(dist, 'jobs.mjs')] }),
};
// The Hub was told the gateway's port before nginx took it; its proxy routes there from now on.
const gateway = await startGateway(
  { 'kbatch-submit': functions.submit.port, 'kbatch-uploads': functions.uploads.port, 'kbatch-jobs': functions.jobs.port },
  { port: gatewayPort },
);
const serviceUrl = `${hub.url}/services/kbatch/`;
const alice = client(serviceUrl, hub.tokens.alice);

/** Reads a streamed body as it arrives; `until` resolves false when the text does not show up in time. */
function readUntil(response: Response) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let ended = false;
  return {
    text: () => text,
    async until(wanted: string, timeoutMs: number): Promise<boolean> {
      const deadline = Date.now() + timeoutMs;
      while (!text.includes(wanted) && !ended) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) return false;
        let timer: NodeJS.Timeout | undefined;
        const chunk = await Promise.race([
          reader.read().catch(() => ({ done: true as const, value: undefined })),
          new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), remaining))),
        ]);
        clearTimeout(timer);
        if (chunk === 'timeout') return false;
        if (chunk.done) ended = true;
        else text += decoder.decode(chunk.value);
      }
      return text.includes(wanted);
    },
    cancel: () => reader.cancel().catch(() => undefined),
  };
}

const shape = suite('three bundled functions behind the gateway and the Hub');
shape('each function serves only its own routes', async () => {
  const direct = (fn: KbatchServer) => client(fn.url, hub.tokens.alice);
  assert.is((await direct(functions.submit)('GET', 'api/v1/jobs')).status, 405);
  assert.is((await direct(functions.uploads)('GET', 'api/v1/jobs')).status, 404);
  assert.is((await direct(functions.jobs)('POST', 'api/v1/uploads', { form: codeForm({ a: 'b' }) })).status, 404);
  for (const fn of Object.values(functions)) assert.is((await client(fn.url)('GET', '')).status, 200, 'readiness probe path');
});
shape('upload → submit with the reference → list → follow logs → delete, all through the Hub', async () => {
  await cluster.setLogs('kbatch-alice', ['epoch 1 loss 0.5', 'epoch 2 loss 0.3']);
  const up = await alice('POST', 'api/v1/uploads', { form: codeForm({ 'main.py': 'print("hi")', 'lib/helpers.py': 'X = 1' }) });
  assert.is(up.status, 201, up.text);
  const created = await alice('POST', 'api/v1/jobs', {
    json: { name: 'fn', image: 'python:3.12', command: ['python', 'main.py'], upload: up.body.upload },
  });
  assert.is(created.status, 201, created.text);
  const name = created.body.name as string;
  const list = await alice('GET', 'api/v1/jobs');
  assert.is(list.body.items[0].name, name);
  await eventually('pod running', async () => (await alice('GET', `api/v1/jobs/${name}`)).body.state === 'running');
  const logs = await alice('GET', `api/v1/jobs/${name}/logs?follow=1`);
  assert.is(logs.text, 'epoch 1 loss 0.5\nepoch 2 loss 0.3\n');
  assert.is((await alice('GET', `api/v1/jobs/${name}`)).body.state, 'succeeded');
  assert.is((await alice('DELETE', `api/v1/jobs/${name}`)).status, 200);
});
shape('a multipart submit streams through the gateway to the submit function', async () => {
  const res = await alice('POST', 'api/v1/jobs', {
    form: codeForm({ 'main.py': 'print(1)' }, { name: 'multi', image: 'python', command: ['python', 'main.py'] }),
  });
  assert.is(res.status, 201, res.text);
});
shape('SIGTERM ends an in-flight log follow with the resume marker and the jobs function exits', async () => {
  await cluster.setLogs('kbatch-alice', ['draining works']);
  const created = await alice('POST', 'api/v1/jobs', { json: { name: 'drain', image: 'busybox', command: ['true'] } });
  const name = created.body.name as string;
  await eventually('pod running', async () => (await alice('GET', `api/v1/jobs/${name}`)).body.state === 'running');
  const response = await fetch(new URL(`api/v1/jobs/${name}/logs?follow=true`, serviceUrl), {
    headers: { authorization: `token ${hub.tokens.alice}` },
  });
  const stream = readUntil(response);
  assert.ok(await stream.until('draining works', 15_000), stream.text());
  const exited = new Promise<number | null>((r) => functions.jobs.process.once('exit', (code) => r(code)));
  functions.jobs.process.kill('SIGTERM');
  // The Hub's proxy (http-proxy-3) does not pass the cut connection on, so a client stops at the marker.
  const marker = `${streamAbortMarker}server shutting down; resume\n`;
  const sawMarker = await stream.until(marker, 5000);
  await stream.cancel();
  // The CLI sees the marker and resumes from its last line, on another replica.
  assert.ok(sawMarker && stream.text().endsWith(marker), stream.text());
  assert.is(await exited, 0);
});
shape.run();

const teardown = suite('teardown');
teardown('stops everything', async () => {
  await gateway.stop();
  await Promise.all(Object.values(functions).map((fn) => fn.stop()));
  await hub.stop();
  await cluster.stop();
});
teardown.run();
