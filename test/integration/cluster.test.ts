// The test control plane (test/stack/cluster.ts) behaves like the cluster kbatch runs against: the kbatch
// identity can run a Job to completion and read and follow its pod's log, and nothing beyond
// knative/rbac.yaml. Needs the binaries from `bash test/cluster/build.sh`.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { PassThrough } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, type Cluster } from '../stack/cluster.ts';

interface Context {
  startError?: unknown;
  /** child processes of the test before the cluster started (tsx keeps an esbuild service around) */
  childrenBefore: string[];
  cluster: Cluster;
  kbatch: k8s.KubeConfig;
  namespace: string;
}

const ClusterSuite = suite<Context>('test cluster');

ClusterSuite.before(async (ctx) => {
  // uvu swallows errors thrown by `before` (the suite would pass with no test run), so keep the error and
  // fail every test with it instead.
  ctx.childrenBefore = childProcesses();
  try {
    ctx.cluster = await startCluster();
  } catch (err) {
    ctx.startError = err;
    return;
  }
  ctx.kbatch = new k8s.KubeConfig();
  ctx.kbatch.loadFromFile(ctx.cluster.kbatchKubeconfig);
  ctx.namespace = `kbatch-it-${randomBytes(3).toString('hex')}`;
});

ClusterSuite.before.each((ctx) => {
  if (ctx.startError) throw ctx.startError;
});

// Safety net when a test failed early; the last test stops the cluster and checks the cleanup itself,
// because uvu cannot report a failed assertion in `after`.
ClusterSuite.after(async (ctx) => {
  await ctx.cluster?.stop();
});

function childProcesses(): string[] {
  return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/\sps$/.test(line));
}

function jobFor(name: string, annotations: Record<string, string> = {}): k8s.V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { annotations },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'job', image: 'busybox', command: ['sh', '-c', 'echo hello'] }],
        },
      },
    },
  };
}

async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const value = await check().catch((err: unknown) => void (lastError = err));
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function runJob(ctx: Context, job: k8s.V1Job): Promise<k8s.V1Pod> {
  const batch = ctx.kbatch.makeApiClient(k8s.BatchV1Api);
  const core = ctx.kbatch.makeApiClient(k8s.CoreV1Api);
  const name = job.metadata!.name!;
  await batch.createNamespacedJob({ namespace: ctx.namespace, body: job });
  await eventually(`job ${name} succeeded`, 30_000, async () => {
    // Via the Job itself: knative/rbac.yaml grants no jobs/status.
    const status = (await batch.readNamespacedJob({ name, namespace: ctx.namespace })).status;
    return status?.succeeded === 1 ? true : undefined;
  });
  const pods = await core.listNamespacedPod({
    namespace: ctx.namespace,
    labelSelector: `batch.kubernetes.io/job-name=${name}`,
  });
  assert.is(pods.items.length, 1);
  return pods.items[0]!;
}

/** Seconds between the pod turning Running and its container terminating (timestamps have 1 s resolution). */
function runSeconds(pod: k8s.V1Pod): number {
  const finished = pod.status?.containerStatuses?.[0]?.state?.terminated?.finishedAt;
  assert.ok(pod.status?.startTime && finished, 'pod has start and finish times');
  return (new Date(finished).getTime() - new Date(pod.status.startTime).getTime()) / 1000;
}

let firstPod: k8s.V1Pod | undefined;

ClusterSuite('the kbatch identity creates a namespace and runs a Job to completion', async (ctx) => {
  const core = ctx.kbatch.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: ctx.namespace } } });
  await ctx.cluster.setLogs(ctx.namespace, ['hello from kbatch', 'second line']);
  firstPod = await runJob(ctx, jobFor('first'));
  assert.is(firstPod.status?.phase, 'Succeeded');
  assert.ok(runSeconds(firstPod) >= 2, 'a job pod runs for about 3 s by default');
});

ClusterSuite('a pod annotation kbatch.test/duration-ms sets how long the pod runs', async (ctx) => {
  const pod = await runJob(ctx, jobFor('quick', { 'kbatch.test/duration-ms': '100' }));
  assert.ok(runSeconds(pod) <= 1, `ran ${runSeconds(pod)} s`);
});

ClusterSuite('the pod log is what setLogs wrote', async (ctx) => {
  const core = ctx.kbatch.makeApiClient(k8s.CoreV1Api);
  const log = await core.readNamespacedPodLog({ name: firstPod!.metadata!.name!, namespace: ctx.namespace, container: 'job' });
  assert.is(log, 'hello from kbatch\nsecond line\n');
});

ClusterSuite('a per-pod log overrides the namespace log', async (ctx) => {
  const core = ctx.kbatch.makeApiClient(k8s.CoreV1Api);
  const name = firstPod!.metadata!.name!;
  await ctx.cluster.setLogs(ctx.namespace, ['only this pod'], { podName: name });
  assert.is(await core.readNamespacedPodLog({ name, namespace: ctx.namespace, container: 'job' }), 'only this pod\n');
});

ClusterSuite('following the log streams lines appended later', async (ctx) => {
  const name = firstPod!.metadata!.name!;
  const lines = ['only this pod'];
  let received = '';
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
  // client-node's Log pipes the response body into `sink` but leaves the body stream without an 'error'
  // listener, so abort() would crash the process with an unhandled AbortError. 'pipe' hands us that stream.
  let streamError: unknown;
  sink.on('pipe', (body: NodeJS.ReadableStream) =>
    body.on('error', (err: Error) => {
      if (err.name !== 'AbortError') streamError = err;
    }),
  );
  const follow = await new k8s.Log(ctx.kbatch).log(ctx.namespace, name, 'job', sink, { follow: true });
  try {
    await eventually('the existing line', 10_000, async () => (received === 'only this pod\n' ? true : undefined));
    lines.push('appended while following');
    await ctx.cluster.setLogs(ctx.namespace, lines, { podName: name });
    await eventually('the appended line', 10_000, async () =>
      received === 'only this pod\nappended while following\n' ? true : undefined,
    );
  } finally {
    // kwok's fake runtime never reports the container as exited, so a follow stream only ends by abort.
    follow.abort();
  }
  assert.is(streamError, undefined);
});

ClusterSuite('the kbatch identity has no rights beyond knative/rbac.yaml', async (ctx) => {
  const forbidden = async (call: () => Promise<unknown>) => {
    try {
      await call();
    } catch (err) {
      assert.instance(err, k8s.ApiException);
      assert.is((err as k8s.ApiException<unknown>).code, 403);
      return;
    }
    assert.unreachable('request was allowed');
  };
  await forbidden(() => ctx.kbatch.makeApiClient(k8s.CoreV1Api).listNode());
  await forbidden(() =>
    ctx.kbatch.makeApiClient(k8s.RbacAuthorizationV1Api).createClusterRole({ body: { metadata: { name: 'escalate' } } }),
  );
  await forbidden(() => ctx.kbatch.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name: ctx.namespace }));
  // Secrets are written (a job's env), never read: not in a user namespace, not anywhere else.
  const core = ctx.kbatch.makeApiClient(k8s.CoreV1Api);
  await forbidden(() => core.readNamespacedSecret({ name: 'any', namespace: 'kube-system' }));
  await forbidden(() => core.listNamespacedSecret({ namespace: ctx.namespace }));
  await forbidden(() => core.listSecretForAllNamespaces());
  await forbidden(() => core.listNamespace());
});

ClusterSuite('stop() leaves no process and no directory behind', async (ctx) => {
  const dir = ctx.cluster.dir;
  await ctx.cluster.stop();
  assert.not.ok(fs.existsSync(dir), 'work dir removed');
  // Every control-plane process has the work dir somewhere in its arguments.
  const leftovers = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(dir));
  assert.equal(leftovers, [], 'no control-plane process survives stop()');
  assert.equal(childProcesses(), ctx.childrenBefore, 'no child process of the test remains');
});

ClusterSuite.run();
