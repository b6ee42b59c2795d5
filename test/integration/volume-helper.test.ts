// The per-user volume helper (lib/backend/kubernetes/volume.ts) moves real bytes through the real API
// server's exec path: KWOK runs each exec as a local process in a per-namespace work directory
// (Cluster.execDir), standing in for the pod's volume. KWOK never closes an exec'd command's stdin,
// so commands here that read stdin stop by themselves (head -c N); closing stdin is for real kubelets. Runs as the kbatch identity (knative/rbac.yaml).
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ExecFailed, VolumeHelper, volumeHelperPodName } from '../../lib/backend/kubernetes/volume.ts';
import { listFiles, readFile, removeDirectory, statFile, tarDirectory } from '../../lib/backend/kubernetes/volume-files.ts';
import { startCluster, type Cluster } from '../stack/cluster.ts';
import { eventually } from './helpers.ts';

interface Context {
  startError?: unknown;
  cluster: Cluster;
  core: k8s.CoreV1Api;
  helper: VolumeHelper;
  owner: { name: string; namespace: string };
  workDir: string;
}

const settings = { helperImage: 'busybox:1.37', uploadPvcSize: '1Gi', uploadPvcAccessMode: 'ReadWriteOnce', volumeHelperIdleSeconds: 2 };

const Helper = suite<Context>('volume helper over exec');

Helper.before(async (ctx) => {
  try {
    ctx.cluster = await startCluster();
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(ctx.cluster.adminKubeconfig);
    ctx.owner = { name: 'alice', namespace: `kbatch-alice-${randomBytes(3).toString('hex')}` };
    // kbatch makes the namespace on first use; here the test stands in for that step.
    await admin.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: ctx.owner.namespace } } });
    ctx.workDir = await ctx.cluster.execDir(ctx.owner.namespace);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(ctx.cluster.kbatchKubeconfig);
    ctx.core = kc.makeApiClient(k8s.CoreV1Api);
    ctx.helper = new VolumeHelper(kc, ctx.core, settings);
  } catch (error) {
    ctx.startError = error;
  }
});

Helper.before.each((ctx) => {
  if (ctx.startError) throw ctx.startError;
});

Helper.after(async (ctx) => {
  ctx.helper?.close();
  await ctx.cluster?.stop();
});

function collect(): { sink: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

Helper('is created on demand: non-root, read-only root filesystem, no token, the volume as working directory', async (ctx) => {
  const out = collect();
  await ctx.helper.run(ctx.owner, ['pwd'], { stdout: out.sink });
  assert.is(out.bytes().toString().trim(), ctx.workDir);
  const pod = await ctx.core.readNamespacedPod({ name: volumeHelperPodName, namespace: ctx.owner.namespace });
  const container = pod.spec!.containers[0]!;
  assert.is(pod.spec!.automountServiceAccountToken, false);
  assert.is(pod.spec!.securityContext!.runAsNonRoot, true);
  assert.is(container.securityContext!.readOnlyRootFilesystem, true);
  assert.is(container.securityContext!.allowPrivilegeEscalation, false);
  assert.is(container.workingDir, '/volume');
  assert.ok(pod.spec!.volumes!.some((v) => v.persistentVolumeClaim?.claimName === 'kbatch-uploads'));
  // kbatch may only create claims; the admin reads it back.
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(ctx.cluster.adminKubeconfig);
  const claim = await admin
    .makeApiClient(k8s.CoreV1Api)
    .readNamespacedPersistentVolumeClaim({ name: 'kbatch-uploads', namespace: ctx.owner.namespace });
  assert.is(claim.status?.phase, 'Bound');
});

Helper('pipes 64 MiB of stdin into a file and streams it back out byte-identical', async (ctx) => {
  const size = 64 * 1024 * 1024;
  const block = randomBytes(1024 * 1024);
  const expected = createHash('sha256');
  for (let i = 0; i < 64; i++) expected.update(block);
  const input = Readable.from(
    (function* () {
      for (let i = 0; i < 64; i++) yield block;
    })(),
  );
  await ctx.helper.run(ctx.owner, ['sh', '-c', `head -c ${size} > big.bin`], { stdin: input });
  const onDisk = fs.readFileSync(path.join(ctx.workDir, 'big.bin'));
  assert.is(onDisk.length, size);
  const digest = expected.digest('hex');
  assert.is(createHash('sha256').update(onDisk).digest('hex'), digest);

  const back = createHash('sha256');
  let received = 0;
  const sink = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, done) {
      back.update(chunk);
      received += chunk.length;
      // A slow reader: backpressure must pause the exec, not buffer the file.
      setTimeout(done, received % (8 * 1024 * 1024) < chunk.length ? 5 : 0);
    },
  });
  await ctx.helper.run(ctx.owner, ['cat', 'big.bin'], { stdout: sink });
  assert.is(received, size);
  assert.is(back.digest('hex'), digest);
  fs.rmSync(path.join(ctx.workDir, 'big.bin'));
});

Helper('a failing command rejects with its exit code and stderr', async (ctx) => {
  const error = await ctx.helper.run(ctx.owner, ['sh', '-c', 'echo nope >&2; exit 3']).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(error, ExecFailed);
  assert.match((error as ExecFailed).message, /nope/);
  assert.is((error as ExecFailed).exitCode, 3);
});

Helper('an aborted transfer ends the command and rejects', async (ctx) => {
  const stdin = new PassThrough();
  stdin.write(Buffer.alloc(1024));
  const controller = new AbortController();
  const running = ctx.helper.run(ctx.owner, ['sh', '-c', 'cat > aborted.bin'], { stdin, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('client went away')), 500);
  const error = await running.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(error, Error);
  assert.match((error as Error).message, /client went away/);
});

Helper('lists, reads (with ranges) and tars files a job left on the volume, never following a link', async (ctx) => {
  const outputs = path.join(ctx.workDir, 'outputs', 'job-1');
  fs.mkdirSync(path.join(outputs, 'sub'), { recursive: true });
  const big = randomBytes(3 * 1024 * 1024 + 17);
  fs.writeFileSync(path.join(outputs, 'result.bin'), big);
  fs.writeFileSync(path.join(outputs, 'sub', 'notes.txt'), 'hello\n');
  fs.writeFileSync(path.join(outputs, 'two\nlines'), 'a name with a newline');
  fs.symlinkSync('/etc/hostname', path.join(outputs, 'link'));
  fs.symlinkSync('/etc', path.join(outputs, 'etc'));
  const files = await listFiles(ctx.helper, ctx.owner, 'outputs/job-1');
  assert.equal(
    files?.map((f) => [f.name, f.size]),
    [
      ['result.bin', big.length],
      ['sub/notes.txt', 6],
    ],
    'regular files only, no name with a newline',
  );
  assert.ok(files!.every((f) => Math.abs(f.mtime - Date.now() / 1000) < 600));
  assert.is(await listFiles(ctx.helper, ctx.owner, 'outputs/none'), undefined, 'no directory: undefined');
  assert.equal(await statFile(ctx.helper, ctx.owner, 'outputs/job-1', 'sub/notes.txt').then((s) => s.size), 6);

  const signal = new AbortController().signal;
  const read = async (file: string, range: { start?: number; length?: number }) =>
    Buffer.concat(await (await readFile(ctx.helper, ctx.owner, 'outputs/job-1', file, range, signal)).toArray());
  assert.ok((await read('result.bin', {})).equals(big), 'byte-identical');
  assert.ok((await read('result.bin', { start: 1_000_000, length: 1234 })).equals(big.subarray(1_000_000, 1_001_234)), 'the range');
  assert.ok((await read('result.bin', { start: big.length - 5 })).equals(big.subarray(big.length - 5)));
  const refused = async (file: string, status: number, pattern: RegExp) =>
    readFile(ctx.helper, ctx.owner, 'outputs/job-1', file, {}, signal).then(
      () => assert.unreachable(`read ${file}`),
      (e: { status?: number; message: string }) => {
        assert.is(e.status, status, e.message);
        assert.match(e.message, pattern);
      },
    );
  await refused('missing', 404, /not found/);
  await refused('link', 404, /symbolic link/);
  await refused('etc/hostname', 404, /symbolic link/);
  await refused('sub', 400, /is a directory/);
  await statFile(ctx.helper, ctx.owner, 'outputs/job-1', 'link').then(
    () => assert.unreachable('stat through a link'),
    (e: { status?: number }) => assert.is(e.status, 404),
  );
  assert.throws(() => readFile(ctx.helper, ctx.owner, 'outputs/job-1', '../../etc/passwd', {}, signal), /escapes the upload root/);

  const tgz = Buffer.concat(await (await tarDirectory(ctx.helper, ctx.owner, 'outputs/job-1', signal)).toArray());
  const listing = execFileSync('tar', ['-tzf', '-'], { input: tgz }).toString().split('\n').filter(Boolean).sort();
  // tar -t shows the newline escaped.
  assert.equal(listing, ['./', './etc', './link', './result.bin', './sub/', './sub/notes.txt', './two\\nlines']);
  await tarDirectory(ctx.helper, ctx.owner, 'outputs/none', signal).then(
    () => assert.unreachable('tar of nothing'),
    (e: { status?: number }) => assert.is(e.status, 404),
  );
  assert.is(await removeDirectory(ctx.helper, ctx.owner, 'outputs/job-1'), 3, 'three regular files removed');
  assert.ok(fs.existsSync('/etc/hostname'), 'links removed, never their targets');
  assert.is(await removeDirectory(ctx.helper, ctx.owner, 'outputs/job-1'), undefined);
  fs.rmSync(path.join(ctx.workDir, 'outputs'), { recursive: true });
});

Helper('is reused while in use and removed once idle', async (ctx) => {
  const uid = async () => (await ctx.core.readNamespacedPod({ name: volumeHelperPodName, namespace: ctx.owner.namespace })).metadata!.uid;
  const first = await uid();
  await Promise.all([ctx.helper.run(ctx.owner, ['true']), ctx.helper.run(ctx.owner, ['true'])]);
  assert.is(await uid(), first, 'the same pod served every exec');
  await eventually(
    'the idle helper to be deleted',
    async () => {
      try {
        const pod = await ctx.core.readNamespacedPod({ name: volumeHelperPodName, namespace: ctx.owner.namespace });
        return Boolean(pod.metadata?.deletionTimestamp);
      } catch (error) {
        return (error as { code?: number }).code === 404;
      }
    },
    20_000,
  );
  // And made again on the next use.
  const out = collect();
  await ctx.helper.run(ctx.owner, ['pwd'], { stdout: out.sink });
  assert.is(out.bytes().toString().trim(), ctx.workDir);
  const second = await uid();
  assert.is.not(second, first);
  // Deleted behind this process's back (another replica's sweep, an admin): the next use makes a new one.
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(ctx.cluster.adminKubeconfig);
  const adminCore = admin.makeApiClient(k8s.CoreV1Api);
  await adminCore.deleteNamespacedPod({ name: volumeHelperPodName, namespace: ctx.owner.namespace, gracePeriodSeconds: 0 });
  await eventually('the helper gone', async () =>
    adminCore.readNamespacedPod({ name: volumeHelperPodName, namespace: ctx.owner.namespace }).then(
      () => false,
      () => true,
    ),
  );
  await ctx.helper.run(ctx.owner, ['true']);
  assert.is.not(await uid(), second);
});

Helper.run();
