// Job outputs through the real stack: the Hub's proxy, the one-process server (Kubernetes backend,
// kbatch identity), the API server's exec into the user's volume helper, KWOK running its commands in
// the namespace's work directory (Cluster.execDir), which is also the hostPath of the user's
// kbatch-uploads PV. KWOK runs no containers, so the test plays the job: it writes into
// `<execDir>/outputs/<job>/`, where the job's /outputs mount (subPathExpr) would put the files.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { apiPaths, deleteOutputsQuery, type OutputList } from '../../lib/contract.ts';
import { resetPeakRss } from '../../bench/lib.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, eventually } from './helpers.ts';

const MiB = 1024 * 1024;
const stack = await startStack({ KBATCH_VOLUME_HELPER_IDLE_SECONDS: '60' });
const aliceNs = 'kbatch-alice';
const bobNs = 'kbatch-bob';
const [aliceDir, bobDir] = await Promise.all([stack.cluster.execDir(aliceNs), stack.cluster.execDir(bobNs)]);
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const bob = client(stack.serviceUrl, stack.hub.tokens.bob);
const admin = adminClients(stack.cluster.adminKubeconfig);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kbatch-outputs-it-'));

/** What the job "wrote": a nested directory, a 20 MiB random file, and a link out of the volume. */
const files: Record<string, Buffer> = {
  'result.txt': Buffer.from('accuracy 0.93\n'),
  'sub/deeper/notes.md': Buffer.from('# notes\n\nnested two levels\n'),
  'big.bin': randomBytes(20 * MiB),
  'with space & caf\u00e9.txt': Buffer.from('odd name\n'),
};
let job = '';

/** Peak and current RSS of the server process (kB), from /proc. */
function serverMemory(): { peakKb: number; rssKb: number } {
  const status = fs.readFileSync(`/proc/${stack.server.process.pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { peakKb: field('VmHWM'), rssKb: field('VmRSS') };
}

async function get(url: string, headers: Record<string, string> = {}, token = stack.hub.tokens.alice) {
  const response = await fetch(new URL(url, stack.serviceUrl), { headers: { authorization: `token ${token}`, ...headers } });
  return { response, bytes: Buffer.from(await response.arrayBuffer()) };
}

const outputs = suite('job outputs: listed, downloaded, ranged, archived and deleted through the Hub');

outputs.after(async () => {
  await stack.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

outputs('a job mounts the user volume at /outputs; its pod is scheduled (the claim exists and binds)', async () => {
  const res = await alice('POST', 'api/v1/jobs', { json: { name: 'writer', image: 'python', command: ['python', '-c', 'pass'] } });
  assert.is(res.status, 201, JSON.stringify(res.body));
  job = res.body.name;
  const created = await admin.batch.readNamespacedJob({ name: job, namespace: aliceNs });
  const container = created.spec!.template.spec!.containers[0]!;
  const mount = container.volumeMounts!.find((m) => m.mountPath === '/outputs')!;
  assert.equal([mount.name, mount.subPathExpr], ['outputs', 'outputs/$(KBATCH_JOB_NAME)']);
  assert.ok(container.env!.some((e) => e.name === 'KBATCH_OUTPUTS_DIR' && e.value === '/outputs'));
  const claim = await admin.core.readNamespacedPersistentVolumeClaim({ name: 'kbatch-uploads', namespace: aliceNs });
  assert.ok(claim.metadata?.uid, 'the claim was made with the namespace');
  await eventually('the job pod to be scheduled', async () => {
    const pods = await admin.core.listNamespacedPod({ namespace: aliceNs, labelSelector: `batch.kubernetes.io/job-name=${job}` });
    return pods.items.some((pod) => pod.spec?.nodeName);
  });

  const dir = path.join(aliceDir, 'outputs', job);
  for (const [name, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), data);
  }
  fs.symlinkSync('/etc/passwd', path.join(dir, 'passwd'));
  fs.symlinkSync('/etc', path.join(dir, 'etc'));
});

outputs('the list names every regular file with its size, sorted; links are left out', async () => {
  const res = await alice<OutputList>('GET', apiPaths.jobOutputs(job));
  assert.is(res.status, 200, res.text);
  assert.is(res.body.job, job);
  const expected = Object.keys(files).sort();
  assert.equal(
    res.body.files.map((f) => [f.path, f.size]),
    expected.map((name) => [name, files[name]!.length]),
  );
  assert.is(
    res.body.totalBytes,
    Object.values(files).reduce((sum, data) => sum + data.length, 0),
  );
  assert.ok(res.body.files.every((f) => Math.abs(Date.parse(f.modified) - Date.now()) < 600_000));
});

outputs('each file downloads byte-identical, with Content-Length and Accept-Ranges', async () => {
  for (const [name, data] of Object.entries(files)) {
    const { response, bytes } = await get(apiPaths.jobOutputFile(job, name));
    assert.is(response.status, 200, `${name}: ${bytes.toString().slice(0, 300)}`);
    assert.is(response.headers.get('content-length'), String(data.length));
    assert.is(response.headers.get('accept-ranges'), 'bytes');
    assert.is(response.headers.get('content-type'), 'application/octet-stream');
    assert.match(response.headers.get('content-disposition') ?? '', /^attachment; /);
    assert.ok(bytes.equals(data), `${name} byte-identical`);
  }
});

outputs('HEAD answers the headers of a file without reading it', async () => {
  const response = await fetch(new URL(apiPaths.jobOutputFile(job, 'big.bin'), stack.serviceUrl), {
    method: 'HEAD',
    headers: { authorization: `token ${stack.hub.tokens.alice}`, range: 'bytes=10-19' },
  });
  assert.is(response.status, 206);
  assert.is(response.headers.get('content-length'), '10');
  assert.is(response.headers.get('content-range'), `bytes 10-19/${files['big.bin']!.length}`);
  assert.is((await response.arrayBuffer()).byteLength, 0);
});

outputs('a Range answers 206 with exactly those bytes; one outside the file is a 416', async () => {
  const big = files['big.bin']!;
  const cases: [string, number, number][] = [
    ['bytes=1000000-1999999', 1_000_000, 1_999_999],
    ['bytes=20971000-', 20_971_000, big.length - 1],
    ['bytes=-100', big.length - 100, big.length - 1],
    ['bytes=0-0', 0, 0],
  ];
  for (const [range, start, end] of cases) {
    const { response, bytes } = await get(apiPaths.jobOutputFile(job, 'big.bin'), { range });
    assert.is(response.status, 206, range);
    assert.is(response.headers.get('content-range'), `bytes ${start}-${end}/${big.length}`);
    assert.is(response.headers.get('content-length'), String(end - start + 1));
    assert.ok(bytes.equals(big.subarray(start, end + 1)), range);
  }
  const { response, bytes } = await get(apiPaths.jobOutputFile(job, 'big.bin'), { range: `bytes=${big.length}-` });
  assert.is(response.status, 416);
  assert.is(response.headers.get('content-range'), `bytes */${big.length}`);
  assert.is(JSON.parse(bytes.toString()).reason, 'RangeNotSatisfiable');
});

outputs('the archive is a tar.gz that unpacks byte-identical, with links stored as links', async () => {
  const { response, bytes } = await get(apiPaths.jobOutputsArchive(job));
  assert.is(response.status, 200, bytes.toString().slice(0, 300));
  assert.is(response.headers.get('content-type'), 'application/gzip');
  assert.match(response.headers.get('content-disposition') ?? '', `attachment; filename="${job}-outputs.tar.gz"`);
  const target = path.join(scratch, 'unpacked');
  fs.mkdirSync(target);
  execFileSync('tar', ['-xzf', '-', '-C', target], { input: bytes });
  for (const [name, data] of Object.entries(files)) assert.ok(fs.readFileSync(path.join(target, name)).equals(data), name);
  assert.is(fs.readlinkSync(path.join(target, 'passwd')), '/etc/passwd');
  assert.not.ok(bytes.includes(Buffer.from('root:x:0')), 'the link target is not in the archive');
});

outputs('hostile paths are 4xx JSON errors and reach nothing', async () => {
  const cases: [string | undefined, number][] = [
    [undefined, 400],
    ['', 400],
    ['/etc/passwd', 400],
    ['../../../etc/passwd', 400],
    ['sub/../../x', 400],
    ['a\0b', 400],
    ['a\nb', 400],
    ['sub', 400],
    ['sub/deeper', 400],
    ['passwd', 404],
    ['etc/passwd', 404],
    ['etc/hostname', 404],
    ['missing.txt', 404],
    ['$(touch /tmp/kbatch-pwned-outputs)\'"`x`', 404],
  ];
  for (const [raw, status] of cases) {
    const url = raw === undefined ? `${apiPaths.jobOutputs(job)}/file` : apiPaths.jobOutputFile(job, raw);
    const res = await alice('GET', url);
    assert.is(res.status, status, `${JSON.stringify(raw)}: ${res.text.slice(0, 300)}`);
    assert.ok(typeof res.body === 'object' && res.body.reason, `${JSON.stringify(raw)} answers a JSON error`);
  }
  assert.not.ok(fs.existsSync('/tmp/kbatch-pwned-outputs'), 'no path reaches a shell unquoted');
});

outputs("another user asking for the same job name finds nothing of Alice's (404 from their own volume)", async () => {
  // Bob has a namespace and volume of his own, so the lookup runs there and finds no such job.
  const own = await bob('POST', 'api/v1/jobs', { json: { name: 'bobs', image: 'python', command: ['true'] } });
  assert.is(own.status, 201, JSON.stringify(own.body));
  // Bob's volume also holds outputs of jobs long gone: his first outputs request starts the retention sweep.
  const ancient = path.join(bobDir, 'outputs', 'ancient-abcde');
  const recent = path.join(bobDir, 'outputs', 'recent-abcde');
  const alive = path.join(bobDir, 'outputs', own.body.name as string);
  for (const dir of [ancient, recent, alive]) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'out.txt'), 'x');
  }
  const longAgo = (Date.now() - 40 * 24 * 3600 * 1000) / 1000;
  fs.utimesSync(ancient, longAgo, longAgo);
  fs.utimesSync(alive, longAgo, longAgo);
  for (const [method, url] of [
    ['GET', apiPaths.jobOutputs(job)],
    ['GET', apiPaths.jobOutputFile(job, 'result.txt')],
    ['GET', apiPaths.jobOutputsArchive(job)],
    ['DELETE', apiPaths.jobOutputs(job)],
    ['DELETE', `${apiPaths.job(job)}?${deleteOutputsQuery}=true`],
  ] as const) {
    const res = await bob(method, url);
    assert.is(res.status, 404, `${method} ${url}: ${res.text.slice(0, 300)}`);
    assert.is(res.body.reason, 'NotFound');
  }
  assert.ok(fs.existsSync(path.join(aliceDir, 'outputs', job, 'result.txt')), "Alice's outputs are untouched");
  await eventually('the sweep of outputs past the 30-day retention', async () => !fs.existsSync(ancient));
  assert.ok(fs.existsSync(recent), 'recent outputs of a gone job stay');
  assert.ok(fs.existsSync(alive), 'old outputs of a job that still exists stay');
});

outputs('a 256 MiB download streams through with bounded server memory', async () => {
  const huge = path.join(aliceDir, 'outputs', job, 'huge.bin');
  fs.closeSync(fs.openSync(huge, 'w'));
  fs.truncateSync(huge, 256 * MiB);
  // Warm-up: the first transfers after start size V8's heap and the buffer pools.
  await get(apiPaths.jobOutputFile(job, 'big.bin'));
  resetPeakRss(stack.server.process.pid!);
  const before = serverMemory();
  const started = Date.now();
  const response = await fetch(new URL(apiPaths.jobOutputFile(job, 'huge.bin'), stack.serviceUrl), {
    headers: { authorization: `token ${stack.hub.tokens.alice}` },
  });
  let received = 0;
  for await (const chunk of response.body!) received += (chunk as Uint8Array).length;
  const seconds = (Date.now() - started) / 1000;
  const after = serverMemory();
  fs.rmSync(huge);
  assert.is(received, 256 * MiB);
  const growthMb = (after.peakKb - before.rssKb) / 1024;
  console.error(
    `[outputs] 256 MiB download: ${seconds.toFixed(1)} s (${(256 / seconds).toFixed(0)} MiB/s), server RSS ${(before.rssKb / 1024).toFixed(0)} MB, peak during it +${growthMb.toFixed(1)} MB`,
  );
  // Bounded, not proportional to the bytes (buffering would be several times them). The goal's 32 MB
  // is measured by bench/ on the bundled server; this source-run server's garbage collector, under the
  // test load, lets freed chunks accumulate a little longer, so the guard leaves it some room.
  assert.ok(growthMb <= 64, `peak RSS grew by ${growthMb.toFixed(1)} MB during a 256 MiB download`);
});

outputs('a download that the client stops reading stalls the read (backpressure); leaving stops it', async () => {
  // Sparse: 256 MiB of zeros that take no disk, more than every socket buffer on the way holds.
  const huge = path.join(aliceDir, 'outputs', job, 'huge.bin');
  fs.closeSync(fs.openSync(huge, 'w'));
  fs.truncateSync(huge, 256 * MiB);
  const controller = new AbortController();
  const response = await fetch(new URL(apiPaths.jobOutputFile(job, 'huge.bin'), stack.serviceUrl), {
    headers: { authorization: `token ${stack.hub.tokens.alice}` },
    signal: controller.signal,
  });
  assert.is(response.headers.get('content-length'), String(256 * MiB));
  const reader = response.body!.getReader();
  await reader.read();
  // The exec's command (`sh -c ... read ./outputs/<job> huge.bin`) and its children are local processes under KWOK.
  const readers = (): string[] => {
    const roots = fs.readdirSync('/proc').filter((pid) => {
      try {
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return argv.includes(`./outputs/${job}`) && argv.includes('huge.bin');
      } catch {
        return false;
      }
    });
    const children = (pid: string): string[] => {
      try {
        const direct = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean);
        return direct.flatMap((child) => [child, ...children(child)]);
      } catch {
        return [];
      }
    };
    return roots.flatMap((pid) => [pid, ...children(pid)]);
  };
  const bytesRead = () =>
    readers().reduce((sum, pid) => {
      try {
        return sum + Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
      } catch {
        return sum;
      }
    }, 0);
  // The client reads nothing more: the read fills the buffers on the way and then waits.
  let before = -1;
  const stalled = await eventually(
    'the read to stall',
    async () => {
      const now = bytesRead();
      const same = now === before && now > 0;
      before = now;
      return same ? now : undefined;
    },
    30_000,
    1000,
  );
  assert.ok(stalled < 200 * MiB, `read ${(stalled / MiB).toFixed(0)} MiB of 256 while the client read one chunk`);
  console.error(`[outputs] a download the client stopped reading stalled after the helper read ${(stalled / MiB).toFixed(1)} MiB`);
  controller.abort();
  await eventually('the read to stop', async () => readers().length === 0, 15_000);
  fs.rmSync(huge);
  // And the server keeps serving.
  assert.is((await alice('GET', apiPaths.jobOutputs(job))).status, 200);
});

outputs('deleting the Job keeps the outputs; ?outputs=true removes them, also once the Job is gone', async () => {
  const deleted = await alice('DELETE', apiPaths.job(job));
  assert.is(deleted.status, 200, deleted.text);
  await eventually('the Job to be gone', async () => (await alice('GET', apiPaths.job(job))).status === 404);
  const kept = await alice<OutputList>('GET', apiPaths.jobOutputs(job));
  assert.is(kept.status, 200, kept.text);
  assert.is(kept.body.files.length, Object.keys(files).length, 'still listed after the Job is gone');
  const { bytes } = await get(apiPaths.jobOutputFile(job, 'result.txt'));
  assert.ok(bytes.equals(files['result.txt']!));

  const removed = await alice('DELETE', `${apiPaths.job(job)}?${deleteOutputsQuery}=true`);
  assert.is(removed.status, 200, removed.text);
  assert.is(removed.body.job, null, 'the Job was already gone');
  assert.is(removed.body.outputs, Object.keys(files).length);
  assert.not.ok(fs.existsSync(path.join(aliceDir, 'outputs', job)));
  assert.ok(fs.existsSync('/etc/passwd'), 'a link removed, never its target');
  assert.is((await alice('GET', apiPaths.jobOutputs(job))).status, 404);
  assert.is((await alice('GET', apiPaths.jobOutputsArchive(job))).status, 404);
  assert.is((await alice('DELETE', `${apiPaths.job(job)}?${deleteOutputsQuery}=true`)).status, 404, 'neither exists now');
});

outputs('a job that wrote nothing yet has an empty list and archive; DELETE outputs of it answers 0', async () => {
  const res = await alice('POST', 'api/v1/jobs', { json: { name: 'quiet', image: 'python', command: ['true'] } });
  assert.is(res.status, 201);
  const name = res.body.name as string;
  const list = await alice<OutputList>('GET', apiPaths.jobOutputs(name));
  assert.equal(list.body, { job: name, files: [], totalBytes: 0 });
  const { response, bytes } = await get(apiPaths.jobOutputsArchive(name));
  assert.is(response.status, 200);
  assert.equal(execFileSync('tar', ['-tzf', '-'], { input: bytes }).toString(), '');
  const removed = await alice('DELETE', apiPaths.jobOutputs(name));
  assert.equal(removed.body, { job: name, deleted: 0 });
});

outputs.run();
