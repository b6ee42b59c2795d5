/**
 * Side by side on one real cluster and one real Hub (issue 10): our one-process server (bundled, as
 * deployed), upstream's kbatch-proxy from PyPI, and the floor (the same Kubernetes calls made directly by
 * this client). Same client, same workload; rounds are interleaved and medians reported, with the load.
 *
 *   npm run bench                 # full sizes, 3 rounds (a few minutes on 2 cores)
 *   npm run bench -- --smoke      # tiny sizes, 1 round: checks the bench itself works (run by npm test)
 *   npm run bench -- --rounds 5 --upload-mb 256
 *   npm run bench -- --only upload  # only the upload rows: multipart zip, streamed tar.gz and upstream JSON at 64 and 256 MiB
 *   npm run bench -- --only list,logs --rounds 1   # some scenarios: list logs submit filled followers upload
 *   KBATCH_BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench -- --only list  # profile our server
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Agent, fetch as undiciFetch } from 'undici';
import { bundle } from '../scripts/bundle.ts';
import { startCluster, type Cluster } from '../test/stack/cluster.ts';
import { startHub, type Hub } from '../test/stack/hub.ts';
import { freePort, killOnExit, startServer, type KbatchServer } from '../test/stack/server.ts';
import { writeZip } from '../cli/zip.ts';
import { concurrently, cpuMs, deployedMemoryEnv, median, peakRssMb, percentile, resetPeakRss, rssMb } from './lib.ts';

const root = resolve(import.meta.dirname, '..');
const { values: flags } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'upload-mb': { type: 'string' },
    only: { type: 'string' },
  },
});
const scenarios = ['list', 'logs', 'submit', 'filled', 'followers', 'upload'] as const;
const only = new Set(flags.only ? flags.only.split(',').map((s) => s.trim()) : scenarios);
for (const name of only) if (!(scenarios as readonly string[]).includes(name)) throw new Error(`--only: unknown scenario ${name}`);
const runs = (scenario: (typeof scenarios)[number]) => only.has(scenario);
const smoke = flags.smoke;
const sizes = {
  rounds: Number(flags.rounds ?? (smoke ? 1 : 3)),
  sequentialSubmits: smoke ? 3 : 20,
  concurrentSubmits: smoke ? 8 : 48,
  concurrency: smoke ? 4 : 16,
  listJobs: smoke ? 5 : 50,
  listRequests: smoke ? 8 : 160,
  logLines: smoke ? 2_000 : 50_000,
  logSamples: smoke ? 1 : 3,
  uploadMb: Number(flags['upload-mb'] ?? (smoke ? 2 : 64)),
  filledJobs: smoke ? 5 : 100,
  idleFollowers: smoke ? 20 : 200,
  idleSeconds: smoke ? 3 : 10,
};
/** The upload is measured at the requested size and at 4x it (≥ 256 MiB at full size). */
const uploadSizes = [sizes.uploadMb, sizes.uploadMb * 4];
const started = Date.now();
const log = (message: string) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${message}`);

// ---------------------------------------------------------------------------------------------------
// The three targets

interface Target {
  name: string;
  /** The serving process, for CPU and memory; the floor has none of its own. */
  pid?: number;
  /** The Kubernetes identity its calls are audited under. */
  identity: string;
  namespace: string;
  submit(): Promise<string>;
  list(): Promise<void>;
  /** Reads a job's whole log (or follows it until `expectBytes` arrived) and returns the bytes received. */
  logs(job: string, pod: string, follow: boolean, expectBytes: number): Promise<number>;
}

const workDir = mkdtempSync(join(tmpdir(), 'kbatch-bench-'));
const template = join(workDir, 'job-template.yaml');
// Pods run for two minutes, so log follows have a live pod and no pod churn skews the timings.
writeFileSync(
  template,
  'apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    metadata:\n      annotations:\n        kbatch.test/duration-ms: "120000"\n',
);
const code = { 'main.py': 'print("hello from kbatch bench")\n'.repeat(20) };
// The same zip the kbatch CLI builds for the upstream API (what `kbatch job submit --code` sends upstream).
const zip = writeZip(
  Object.entries(code).map(([path, content]) => ({ path, type: 'file' as const, mode: 0o644, data: Buffer.from(content) })),
);

function upstreamSubmitBody(name: string) {
  // What `kbatch job submit --code main.py` (0.5.0b1) POSTs: V1Job.to_dict() plus the code ConfigMap.
  return {
    job: {
      api_version: 'batch/v1',
      kind: 'Job',
      metadata: { annotations: {}, generate_name: `${name}-`, labels: {}, name: null, namespace: null },
      spec: {
        backoff_limit: 0,
        ttl_seconds_after_finished: 300,
        template: {
          metadata: { annotations: {}, labels: {}, name: `${name}-pod` },
          spec: {
            restart_policy: 'Never',
            containers: [
              {
                name: 'job',
                image: 'python:3.12',
                command: ['python', 'main.py'],
                args: null,
                env: [{ name: 'A', value: '1', value_from: null }],
                working_dir: '/code',
                resources: { limits: {}, requests: {} },
              },
            ],
          },
        },
      },
      status: null,
    },
    code: {
      api_version: 'v1',
      kind: 'ConfigMap',
      binary_data: { code: zip.toString('base64') },
      data: null,
      metadata: { generate_name: name },
    },
  };
}

async function expectStatus(response: Response, ok: number[], what: string): Promise<string> {
  const text = await response.text();
  if (!ok.includes(response.status)) throw new Error(`${what}: HTTP ${response.status} ${text.slice(0, 200)}`);
  return text;
}

async function readAll(response: Response, follow: boolean, expectBytes: number): Promise<number> {
  let bytes = 0;
  const reader = response.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      if (follow && bytes >= expectBytes) break;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return bytes;
}

function ourTarget(server: KbatchServer, token: string, namespace: string): Target[] {
  const auth = { authorization: `token ${token}` };
  const base: Omit<Target, 'name' | 'submit' | 'list'> = {
    pid: server.process.pid,
    identity: 'system:serviceaccount:kbatch:kbatch',
    namespace,
    async logs(job, _pod, follow, expectBytes) {
      const response = await fetch(`${server.url}api/v1/jobs/${job}/logs${follow ? '?follow=true' : ''}`, { headers: auth });
      if (!response.ok) throw new Error(`logs: HTTP ${response.status} ${await response.text()}`);
      return readAll(response, follow, expectBytes);
    },
  };
  return [
    {
      ...base,
      name: 'ours (native API)',
      async submit() {
        const form = new FormData();
        form.append('spec', JSON.stringify({ name: 'bench', image: 'python:3.12', command: ['python', 'main.py'], env: { A: '1' } }));
        for (const [path, content] of Object.entries(code)) form.append('file', new Blob([content]), path);
        const text = await expectStatus(
          await fetch(`${server.url}api/v1/jobs`, { method: 'POST', headers: auth, body: form }),
          [201],
          'submit',
        );
        return (JSON.parse(text) as { name: string }).name;
      },
      async list() {
        await expectStatus(await fetch(`${server.url}api/v1/jobs?limit=500`, { headers: auth }), [200], 'list');
      },
    },
    {
      ...base,
      name: 'ours (upstream API)',
      async submit() {
        const body = JSON.stringify(upstreamSubmitBody('bench'));
        const text = await expectStatus(
          await fetch(`${server.url}jobs/`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body }),
          [200, 201],
          'submit',
        );
        return (JSON.parse(text) as { metadata: { name: string } }).metadata.name;
      },
      async list() {
        await expectStatus(await fetch(`${server.url}jobs/`, { headers: auth }), [200], 'list');
      },
    },
  ];
}

function proxyTarget(url: string, pid: number, token: string, namespace: string): Target {
  const auth = { authorization: `token ${token}` };
  return {
    name: 'kbatch-proxy 0.5.0b1',
    pid,
    identity: 'admin',
    namespace,
    async submit() {
      const body = JSON.stringify(upstreamSubmitBody('bench'));
      const text = await expectStatus(
        await fetch(`${url}jobs/`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body }),
        [200, 201],
        'submit',
      );
      return (JSON.parse(text) as { metadata: { name: string } }).metadata.name;
    },
    async list() {
      await expectStatus(await fetch(`${url}jobs/`, { headers: auth }), [200], 'list');
    },
    async logs(job, _pod, follow, expectBytes) {
      const response = await fetch(`${url}jobs/logs/${job}/${follow ? '?stream=true' : ''}`, { headers: auth });
      if (!response.ok) throw new Error(`logs: HTTP ${response.status} ${await response.text()}`);
      return readAll(response, follow, expectBytes);
    },
  };
}

/**
 * The floor: the Kubernetes calls a submit needs, made directly over one keep-alive connection pool:
 * the code ConfigMap, the env Secret, the Job, and the two owner patches that tie them to the Job.
 */
function floorTarget(cluster: Cluster, namespace: string, logNamespace: string): Target {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.adminKubeconfig);
  const server = kc.getCurrentCluster()!.server;
  const token = kc.getCurrentUser()!.token!;
  const ca = readFileSync(kc.getCurrentCluster()!.caFile ?? '', 'utf8');
  const dispatcher = new Agent({ connect: { ca }, keepAliveTimeout: 60_000 });
  const call = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const response = await undiciFetch(`${server}${path}`, {
      method,
      dispatcher,
      headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${text.slice(0, 200)}`);
    return text ? (JSON.parse(text) as { metadata: { name: string; uid: string } }) : undefined;
  };
  const ns = `/api/v1/namespaces/${namespace}`;
  return {
    name: 'floor (bare API calls)',
    identity: 'admin',
    namespace,
    async submit() {
      const suffix = randomBytes(4).toString('hex');
      const name = `bench-${suffix}`;
      const configMap = await call('POST', `${ns}/configmaps`, {
        metadata: { name: `code-${suffix}` },
        binaryData: { 'code.zip': zip.toString('base64') },
      });
      const secret = await call('POST', `${ns}/secrets`, { metadata: { name }, stringData: { A: '1' } });
      const job = await call('POST', `/apis/batch/v1/namespaces/${namespace}/jobs`, {
        metadata: { name },
        spec: {
          backoffLimit: 0,
          template: {
            metadata: { annotations: { 'kbatch.test/duration-ms': '120000' } },
            spec: {
              restartPolicy: 'Never',
              containers: [
                {
                  name: 'job',
                  image: 'python:3.12',
                  command: ['python', 'main.py'],
                  env: [{ name: 'A', valueFrom: { secretKeyRef: { name, key: 'A' } } }],
                },
              ],
              volumes: [{ name: 'code', configMap: { name: configMap!.metadata.name } }],
            },
          },
        },
      });
      const owner = { metadata: { ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: job!.metadata.uid }] } };
      await call('PATCH', `${ns}/configmaps/${configMap!.metadata.name}`, owner, 'application/strategic-merge-patch+json');
      await call('PATCH', `${ns}/secrets/${name}`, owner, 'application/strategic-merge-patch+json');
      return name;
    },
    async list() {
      await call('GET', `/apis/batch/v1/namespaces/${namespace}/jobs`);
    },
    async logs(_job, pod, follow, expectBytes) {
      const response = await undiciFetch(
        `${server}/api/v1/namespaces/${logNamespace}/pods/${pod}/log?container=job${follow ? '&follow=true' : ''}`,
        {
          dispatcher,
          headers: { authorization: `Bearer ${token}` },
        },
      );
      if (!response.ok) throw new Error(`logs: HTTP ${response.status} ${await response.text()}`);
      return readAll(response as unknown as Response, follow, expectBytes);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Starting everything

async function startProxy(
  hub: Hub,
  cluster: Cluster,
  port: number,
): Promise<{ url: string; process: ChildProcess; stop(): Promise<void> }> {
  const setup = spawnSync('bash', [join(root, 'test/upstream/proxy-setup.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (setup.status !== 0) throw new Error('test/upstream/proxy-setup.sh failed');
  const venv = setup.stdout.trim();
  const logFile = join(workDir, 'kbatch-proxy.log');
  const child = spawn(
    join(venv, 'bin/uvicorn'),
    ['kbatch_proxy.main:app', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warning', '--no-access-log'],
    {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        JUPYTERHUB_API_URL: hub.apiUrl,
        // HubAuth wants a token of its own; it checks callers with their own token (GET /user).
        JUPYTERHUB_API_TOKEN: await hub.createToken('carol'),
        JUPYTERHUB_SERVICE_NAME: 'kbatch',
        KBATCH_PREFIX: '/services/kbatch',
        KBATCH_JOB_TEMPLATE_FILE: template,
        KBATCH_INIT_LOGGING: 'false',
        KUBECONFIG: cluster.adminKubeconfig,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  killOnExit(child);
  const url = `http://127.0.0.1:${port}/services/kbatch/`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kbatch-proxy exited: ${stderr}`);
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`kbatch-proxy did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    process: child,
    async stop() {
      if (child.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Measurements

interface Row {
  metric: string;
  unit: string;
  /** Per target name: the median over rounds. */
  values: Record<string, number>;
  /** Which value the ratios are against. */
  baseline?: string;
  /** Lower is better (times, bytes); false for throughputs. */
  lowerIsBetter: boolean;
}

const rows = new Map<string, Row>();
const samples = new Map<string, Map<string, number[]>>();

function record(metric: string, unit: string, target: string, value: number, lowerIsBetter = true): void {
  if (!rows.has(metric)) rows.set(metric, { metric, unit, values: {}, lowerIsBetter });
  if (!samples.has(metric)) samples.set(metric, new Map());
  const perTarget = samples.get(metric)!;
  perTarget.set(target, [...(perTarget.get(target) ?? []), value]);
}

/** Audit events of one identity appended to the API server's audit log since `offset`. */
function auditCalls(cluster: Cluster, identity: string, offset: number): number {
  const text = readFileSync(join(cluster.dir, 'audit.log'), 'utf8').slice(offset);
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.includes(`"username":"${identity}"`) && line.includes('"stage":"ResponseComplete"')) count++;
  }
  return count;
}

const auditOffset = (cluster: Cluster) => statSync(join(cluster.dir, 'audit.log')).size;

async function measureSubmits(target: Target, cluster: Cluster): Promise<void> {
  const times: number[] = [];
  const cpuBefore = target.pid ? cpuMs(target.pid) : 0;
  const offset = auditOffset(cluster);
  for (let i = 0; i < sizes.sequentialSubmits; i++) {
    const t0 = performance.now();
    await target.submit();
    times.push(performance.now() - t0);
  }
  // The floor's calls are its own; for a server, count only its identity's calls.
  const calls = auditCalls(cluster, target.identity, offset) / sizes.sequentialSubmits;
  record('submit p50, sequential', 'ms', target.name, percentile(times, 50));
  record('submit p95, sequential', 'ms', target.name, percentile(times, 95));
  if (target.pid) record('server CPU per submit', 'ms', target.name, (cpuMs(target.pid) - cpuBefore) / sizes.sequentialSubmits);
  record('Kubernetes API calls per submit', 'calls', target.name, calls);

  if (target.pid) resetPeakRss(target.pid);
  const burst = await concurrently(sizes.concurrentSubmits, sizes.concurrency, async () => void (await target.submit()));
  record(`submit throughput, ${sizes.concurrency} concurrent`, 'req/s', target.name, sizes.concurrentSubmits / burst.seconds, false);
  record(`submit errors, ${sizes.concurrency} concurrent`, 'errors', target.name, burst.errors.length);
  if (burst.errors.length) log(`${target.name}: ${burst.errors.length} submit errors, first: ${burst.errors[0]}`);
  if (target.pid) record('peak RSS under submit load', 'MB', target.name, peakRssMb(target.pid));
}

async function measureList(target: Target): Promise<void> {
  if (target.pid) resetPeakRss(target.pid);
  const cpuBefore = target.pid ? cpuMs(target.pid) : 0;
  const run = await concurrently(sizes.listRequests, sizes.concurrency, () => target.list());
  record(
    `list throughput, ${sizes.concurrency} concurrent (${sizes.listJobs} jobs)`,
    'req/s',
    target.name,
    sizes.listRequests / run.seconds,
    false,
  );
  record(`list errors`, 'errors', target.name, run.errors.length);
  if (run.errors.length) log(`${target.name}: ${run.errors.length} list errors, first: ${run.errors[0]}`);
  if (target.pid) {
    record('server CPU per list', 'ms', target.name, (cpuMs(target.pid) - cpuBefore) / sizes.listRequests);
    record('peak RSS under list load', 'MB', target.name, peakRssMb(target.pid));
  }
}

async function measureLogs(target: Target, job: string, pod: string, logBytes: number, lines: number): Promise<void> {
  const mb = logBytes / 1e6;
  for (const follow of [false, true]) {
    const label = follow ? 'log follow' : 'log fetch';
    // Upstream sends each line without its newline (its CLI adds it back).
    const expect = target.name.startsWith('kbatch-proxy') ? logBytes - lines : logBytes;
    // A single transfer of a third of a second swings by 2x on a shared machine: several per round.
    for (let sample = 0; sample < sizes.logSamples; sample++) {
      const cpuBefore = target.pid ? cpuMs(target.pid) : 0;
      const t0 = performance.now();
      const received = await target.logs(job, pod, follow, expect);
      const seconds = (performance.now() - t0) / 1000;
      if (received < expect) log(`${target.name}: ${label} got ${received} of ${expect} bytes`);
      record(`${label} of a ${mb.toFixed(1)} MB log`, 'MB/s', target.name, received / 1e6 / seconds, false);
      if (target.pid) record(`server CPU per MB, ${label}`, 'ms', target.name, (cpuMs(target.pid) - cpuBefore) / (received / 1e6));
    }
  }
}

/**
 * Many followers of a quiet log (a running pod that prints nothing): what they cost the server in
 * memory and CPU, and in Kubernetes API calls, once they are all open. Ours only: kbatch-proxy
 * serves one blocking stream per worker.
 */
async function measureIdleFollowers(server: KbatchServer, cluster: Cluster, token: string, job: string): Promise<void> {
  const pid = server.process.pid!;
  const n = sizes.idleFollowers;
  const dispatcher = new Agent({ connections: n + 10, keepAliveTimeout: 60_000 });
  const controllers: AbortController[] = [];
  const before = rssMb(pid);
  const opened = await Promise.allSettled(
    Array.from({ length: n }, async () => {
      const controller = new AbortController();
      controllers.push(controller);
      // A follower whose answer does not start within the limit counts as not open (and is dropped).
      const limit = setTimeout(() => controller.abort(new Error('no answer within 30 s')), 30_000);
      const response = await undiciFetch(`${server.url}api/v1/jobs/${job}/logs?follow=true`, {
        headers: { authorization: `token ${token}` },
        dispatcher,
        signal: controller.signal,
      }).finally(() => clearTimeout(limit));
      if (!response.ok) throw new Error(`follow: HTTP ${response.status} ${await response.text()}`);
      // Read (and drop) whatever comes, so a follower never stalls the server on backpressure.
      void response.body?.pipeTo(new WritableStream()).catch(() => undefined);
    }),
  );
  const failed = opened.filter((r) => r.status === 'rejected');
  if (failed.length) log(`idle followers: ${failed.length} of ${n} failed, first: ${(failed[0] as PromiseRejectedResult).reason}`);
  // Let the first "has the pod finished" checks pass, then measure a quiet window.
  await new Promise((r) => setTimeout(r, 5000));
  const cpu0 = cpuMs(pid);
  const offset = auditOffset(cluster);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, sizes.idleSeconds * 1000));
  const seconds = (performance.now() - t0) / 1000;
  const label = `${n} idle log followers`;
  record(`${label}: RSS growth`, 'MB', 'ours (native API)', rssMb(pid) - before);
  record(`${label}: server CPU`, 'ms/s', 'ours (native API)', (cpuMs(pid) - cpu0) / seconds);
  record(
    `${label}: API calls`,
    'calls/s',
    'ours (native API)',
    auditCalls(cluster, 'system:serviceaccount:kbatch:kbatch', offset) / seconds,
  );
  record(`${label}: open`, 'streams', 'ours (native API)', n - failed.length, false);
  for (const controller of controllers) controller.abort();
  await dispatcher.destroy().catch(() => undefined);
}

async function fillNamespace(target: Target, count: number): Promise<string[]> {
  const names: string[] = [];
  await concurrently(count, 4, async () => void names.push(await target.submit()));
  return names;
}

async function waitForPod(cluster: Cluster, namespace: string, job: string): Promise<string> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.adminKubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pods = await core.listNamespacedPod({ namespace, labelSelector: `batch.kubernetes.io/job-name=${job}` });
    const running = pods.items.find((p) => p.status?.phase === 'Running');
    if (running) return running.metadata!.name!;
    if (Date.now() > deadline) throw new Error(`no running pod for ${namespace}/${job}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * RSS growth of the server for one upload of each shape and size (issue 10: ≤ 32 MB whatever the
 * size): a zip in a multipart `archive` part (the shape of the kbatch-proxy era CLIs and of scripts),
 * and a bare tar.gz body (the streamed route). curl sends both from disk, so the client holds nothing.
 * Random bytes do not compress, so what goes on the wire is as large as the content.
 */
async function measureUploads(server: KbatchServer, token: string, cluster: Cluster): Promise<void> {
  const pid = server.process.pid!;
  // The user's volume: the test cluster has no provisioner, so its PV is bound ahead (and is KWOK's exec dir).
  await cluster.execDir('kbatch-alice');
  const upload = (shape: 'multipart zip' | 'streamed tar.gz' | 'upstream JSON', file: string) => {
    const answer = join(workDir, 'answer.json');
    const body =
      shape === 'multipart zip'
        ? ['-F', `archive=@${file};filename=code.zip`]
        : shape === 'upstream JSON'
          ? ['-H', 'content-type: application/json', '--data-binary', `@${file}`]
          : ['-H', 'content-type: application/gzip', '--data-binary', `@${file}`];
    // The upstream CLI's submit: a Job with the zip base64 in its body, created at once (200).
    const path = shape === 'upstream JSON' ? 'jobs/' : 'api/v1/uploads';
    const expected = shape === 'upstream JSON' ? '200' : '201';
    const t0 = performance.now();
    const curl = spawnSync(
      'curl',
      ['-sS', '-o', answer, '-w', '%{http_code}', '-H', `authorization: token ${token}`, ...body, `${server.url}${path}`],
      {
        encoding: 'utf8',
      },
    );
    const seconds = (performance.now() - t0) / 1000;
    if (curl.stdout !== expected)
      log(`upload of ${file} (${shape}): HTTP ${curl.stdout} ${curl.stderr} ${readFileSync(answer, 'utf8').slice(0, 300)}`);
    return seconds;
  };
  const archives = (mb: number) => {
    const dir = join(workDir, 'upload');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'data.bin'), randomBytes(mb * 1024 * 1024));
    const zip = join(workDir, `upload-${mb}.zip`);
    const tgz = join(workDir, `upload-${mb}.tar.gz`);
    for (const [command, args] of [
      ['zip', ['-q', '-1', '-j', zip, join(dir, 'data.bin')]],
      ['tar', ['-C', dir, '-czf', tgz, 'data.bin']],
    ] as const) {
      const made = spawnSync(command, args, { env: { ...process.env, GZIP: '-1' } });
      if (made.status !== 0) throw new Error(`${command} failed: ${made.stderr}`);
    }
    rmSync(dir, { recursive: true, force: true });
    // What `kbatch job submit --code` (upstream CLI) posts: the zip as base64 inside the JSON body.
    const json = join(workDir, `upload-${mb}.json`);
    const [head, tail] = JSON.stringify({ job: upstreamSubmitBody('upload').job, code: { binary_data: { code: '@CODE@' } } }).split(
      '@CODE@',
    );
    writeFileSync(json, `${head}${readFileSync(zip).toString('base64')}${tail}`);
    return { zip, tgz, json };
  };
  // The first transfers after start size V8's heap and the buffer pools (tens of MB, once); a
  // server in service is past them, so one small upload of each shape goes first, unmeasured.
  const warm = archives(Math.max(1, sizes.uploadMb / 4));
  upload('multipart zip', warm.zip);
  upload('streamed tar.gz', warm.tgz);
  upload('upstream JSON', warm.json);
  for (const mb of uploadSizes) {
    const { zip, tgz, json } = archives(mb);
    for (const [shape, file] of [
      ['multipart zip', zip],
      ['streamed tar.gz', tgz],
      ['upstream JSON', json],
    ] as const) {
      await new Promise((r) => setTimeout(r, 1000));
      const before = rssMb(pid);
      resetPeakRss(pid);
      const seconds = upload(shape, file);
      const peak = peakRssMb(pid);
      await new Promise((r) => setTimeout(r, 2000));
      const row = `upload of ${mb} MiB, ${shape} (ours)`;
      record(`${row}: RSS growth at peak`, 'MB', 'ours (native API)', peak - before);
      record(`${row}: RSS growth 2 s after`, 'MB', 'ours (native API)', rssMb(pid) - before);
      record(`${row}: throughput`, 'MB/s', 'ours (native API)', statSync(file).size / 1e6 / seconds, false);
    }
    rmSync(zip, { force: true });
    rmSync(tgz, { force: true });
    rmSync(json, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------

function printTable(targets: Target[]): void {
  const names = targets.map((t) => t.name);
  const baselineOf = (row: Row) => {
    if (row.metric.startsWith('upload')) return undefined;
    return 'floor (bare API calls)' in row.values ? 'floor (bare API calls)' : undefined;
  };
  const header = ['metric', 'unit', ...names, 'ours/floor', 'ours/proxy'];
  const lines: string[][] = [header];
  for (const [metric, row] of rows) {
    for (const [target, values] of samples.get(metric)!) row.values[target] = median(values);
    const ours = row.values['ours (native API)'] ?? row.values['ours (upstream API)'];
    const floor = row.values[baselineOf(row) ?? ''];
    const proxy = row.values['kbatch-proxy 0.5.0b1'];
    const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b !== 0 ? `${(a / b).toFixed(2)}x` : '');
    lines.push([
      metric,
      row.unit,
      ...names.map((n) =>
        row.values[n] === undefined ? '–' : row.values[n]! >= 100 ? row.values[n]!.toFixed(0) : row.values[n]!.toFixed(1),
      ),
      ratio(ours, floor),
      ratio(ours, proxy),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const format = (l: string[]) => `| ${l.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(format(lines[0]!));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const l of lines.slice(1)) console.log(format(l));
}

async function main(): Promise<void> {
  log(`sizes: ${JSON.stringify(sizes)}; our server's memory settings (Dockerfile): ${JSON.stringify(deployedMemoryEnv())}`);
  const cluster = await startCluster({ auditLog: true });
  const ourPort = await freePort();
  let hub: Hub | undefined;
  let server: KbatchServer | undefined;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  try {
    hub = await startHub({ serviceUrl: `http://127.0.0.1:${ourPort}` });
    const dist = join(workDir, 'dist');
    await bundle(dist);
    server = await startServer(
      {
        KBATCH_BACKEND: 'kubernetes',
        KUBECONFIG: cluster.kbatchKubeconfig,
        JUPYTERHUB_API_URL: hub.apiUrl,
        JUPYTERHUB_SERVICE_NAME: 'kbatch',
        KBATCH_JOB_TEMPLATE_FILE: template,
        KBATCH_MAX_UPLOAD_BYTES: String((Math.max(...uploadSizes) + 16) * 1024 * 1024),
        ...deployedMemoryEnv(),
      },
      // Node flags for our server only (profiling: --cpu-prof, --heap-prof), split on spaces.
      { port: ourPort, entry: [...(process.env.KBATCH_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), join(dist, 'server.mjs')] },
    );
    if (flags.only === 'upload') {
      log('upload');
      await measureUploads(server, hub.tokens.alice, cluster);
      printTable([{ name: 'ours (native API)' } as Target]);
      return;
    }
    proxy = await startProxy(hub, cluster, await freePort());
    const idle = { ours: rssMb(server.process.pid!), proxy: rssMb(proxy.process.pid!) };
    const [oursNative, oursUpstream] = ourTarget(server, hub.tokens.alice, 'kbatch-alice');
    const upstream = proxyTarget(proxy.url, proxy.process.pid!, hub.tokens.bob, 'kbatch-bob');
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.adminKubeconfig);
    await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: 'kbatch-floor' } } });
    const floor = floorTarget(cluster, 'kbatch-floor', 'kbatch-alice');
    const targets = [oursNative!, oursUpstream!, upstream, floor];
    record('idle RSS', 'MB', oursNative!.name, idle.ours);
    record('idle RSS', 'MB', upstream.name, idle.proxy);

    // Lists first, on namespaces holding exactly `listJobs` jobs each (ours: alice; proxy: bob).
    log(`filling namespaces with ${sizes.listJobs} jobs each`);
    const [oursJobs, proxyJobs] = [await fillNamespace(oursNative!, sizes.listJobs), await fillNamespace(upstream, sizes.listJobs)];
    await fillNamespace(floor, sizes.listJobs);

    // One 5 MB log served for every pod of the two users' namespaces.
    const lines = Array.from({ length: sizes.logLines }, (_, i) => `line ${String(i).padStart(7, '0')} ${'x'.repeat(84)}`);
    const logBytes = lines.reduce((n, l) => n + l.length + 1, 0);
    await cluster.setLogs('kbatch-alice', lines);
    await cluster.setLogs('kbatch-bob', lines);
    const oursPod = await waitForPod(cluster, 'kbatch-alice', oursJobs[0]!);
    const proxyPod = await waitForPod(cluster, 'kbatch-bob', proxyJobs[0]!);

    for (let round = 0; round < sizes.rounds; round++) {
      // Rotate the order each round so no target always runs on a warmer or busier machine.
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      log(`round ${round + 1}/${sizes.rounds}: list, logs (load ${loadavg()[0]!.toFixed(2)})`);
      for (const target of order) {
        if (runs('list')) await measureList(target);
        if (target === oursUpstream) continue; // its logs are the native route's, counted once
        const [job, pod] = target === upstream ? [proxyJobs[0]!, proxyPod] : [oursJobs[0]!, oursPod];
        if (runs('logs')) await measureLogs(target, job, pod, logBytes, lines.length);
      }
    }
    for (let round = 0; round < (runs('submit') ? sizes.rounds : 0); round++) {
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      log(`round ${round + 1}/${sizes.rounds}: submits (load ${loadavg()[0]!.toFixed(2)})`);
      for (const target of order) await measureSubmits(target, cluster);
    }

    // Flat as the namespace fills: the same sequential submits after `filledJobs` more jobs with code.
    if (runs('filled')) log(`filling with ${sizes.filledJobs} more jobs with code`);
    for (const target of runs('filled') ? [oursNative!, upstream] : []) {
      await fillNamespace(target, sizes.filledJobs);
      const times: number[] = [];
      for (let i = 0; i < sizes.sequentialSubmits; i++) {
        const t0 = performance.now();
        await target.submit();
        times.push(performance.now() - t0);
      }
      record(`submit p50 after ${sizes.filledJobs} more jobs with code`, 'ms', target.name, percentile(times, 50));
    }
    if (runs('followers')) {
      log(`${sizes.idleFollowers} idle log followers`);
      const quietJob = await oursNative!.submit();
      const quietPod = await waitForPod(cluster, 'kbatch-alice', quietJob);
      await cluster.setLogs('kbatch-alice', [], { podName: quietPod });
      await measureIdleFollowers(server, cluster, hub.tokens.alice, quietJob);
    }
    if (runs('upload')) {
      log('upload');
      await measureUploads(server, hub.tokens.alice, cluster);
    }
    record('idle RSS after the run', 'MB', oursNative!.name, rssMb(server.process.pid!));
    record('idle RSS after the run', 'MB', upstream.name, rssMb(proxy.process.pid!));

    console.log(
      `\nkbatch bench: ${sizes.rounds} round(s), medians; node ${process.version}; ${(await import('node:os')).cpus().length} cores; load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    printTable(targets);
  } finally {
    await proxy?.stop();
    await server?.stop();
    await hub?.stop();
    await cluster.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
