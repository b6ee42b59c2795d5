// Streamed uploads through the real stack: the Hub's proxy, the one-process server (Kubernetes
// backend, kbatch identity), the API server's exec into the user's volume helper, and KWOK running
// the helper's commands in a per-namespace work directory (Cluster.execDir) that stands in for the
// volume, so the bytes that arrive there are the bytes that went through exec.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeHeader, writeTar } from '../../lib/uploads/archive.ts';
import { writeZip } from '../../cli/zip.ts';
import { resetPeakRss } from '../../bench/lib.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, postFormFresh } from './helpers.ts';

const MiB = 1024 * 1024;
/** The server's temporary directory, where multipart uploads spool. */
const spoolDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbatch-datapath-tmp-'));
const stack = await startStack({
  KBATCH_MAX_UPLOAD_BYTES: String(300 * MiB),
  KBATCH_VOLUME_HELPER_IDLE_SECONDS: '60',
  TMPDIR: spoolDir,
});
const aliceNs = 'kbatch-alice';
const workDir = await stack.cluster.execDir(aliceNs);
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const admin = adminClients(stack.cluster.adminKubeconfig);
const uploadsDir = path.join(workDir, 'uploads');

/** A tar generated as it is sent: `files` files of `fileBytes` pseudo-random bytes, then `tail` entries. */
function tarStream(
  files: number,
  fileBytes: number,
  tail: Buffer = Buffer.alloc(1024),
): { body: ReadableStream<Uint8Array>; digests: Map<string, string> } {
  const digests = new Map<string, string>();
  const block = randomBytes(MiB);
  async function* generate() {
    for (let i = 0; i < files; i++) {
      const name = `data/part-${String(i).padStart(4, '0')}.bin`;
      const header = Buffer.alloc(512);
      writeHeader(header, name, fileBytes, 0o644, '0');
      yield header;
      const hash = createHash('sha256');
      for (let sent = 0; sent < fileBytes; sent += MiB) {
        // Each file differs: its index salts the first bytes of every MiB.
        const piece = Buffer.from(block.subarray(0, Math.min(MiB, fileBytes - sent)));
        piece.writeUInt32LE(i, 0);
        hash.update(piece);
        yield piece;
      }
      digests.set(name, hash.digest('hex'));
      const padding = (512 - (fileBytes % 512)) % 512;
      if (padding) yield Buffer.alloc(padding);
    }
    yield tail;
  }
  const iterator = generate();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(new Uint8Array(value));
    },
  });
  return { body, digests };
}

async function postArchive(body: ReadableStream<Uint8Array> | Buffer, type = 'application/x-tar') {
  const response = await fetch(new URL('api/v1/uploads', stack.serviceUrl), {
    method: 'POST',
    headers: { authorization: `token ${stack.hub.tokens.alice}`, 'content-type': type },
    body: body instanceof Buffer ? new Uint8Array(body) : body,
    duplex: 'half',
  } as RequestInit).catch((error: Error) => {
    throw new Error(
      `upload request failed: ${error.message} (${(error.cause as Error | undefined)?.message}); server log tail:\n${fs.readFileSync(stack.server.logFile, 'utf8').slice(-3000)}`,
    );
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as Record<string, any> };
}

/** Peak and current RSS of the server process (kB), from /proc. */
function serverMemory(): { peakKb: number; rssKb: number } {
  const status = fs.readFileSync(`/proc/${stack.server.process.pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { peakKb: field('VmHWM'), rssKb: field('VmRSS') };
}

/** Where the signed reference says the upload lives on the volume (its claims are readable, only the signature is secret). */
function uploadPath(reference: string): string {
  const claims = JSON.parse(Buffer.from(reference.split('.')[1]!, 'base64url').toString()) as { code: { kind: string; path: string } };
  assert.is(claims.code.kind, 'pvc');
  return claims.code.path;
}

function entriesOnVolume(): string[] {
  return fs.existsSync(uploadsDir) ? fs.readdirSync(uploadsDir).sort() : [];
}

const streamed = suite('streamed uploads into the user volume');

streamed('a 200 MiB tar streams through exec into the volume with bounded server memory', async () => {
  // Warm up the path (helper pod, namespace, client-node) so the measure is the transfer's own.
  const warm = await postArchive(writeTar([{ path: 'warm.txt', type: 'file', mode: 0o644, data: Buffer.from('warm') }]));
  assert.is(warm.status, 201, JSON.stringify(warm.body));
  // The first transfers after start size V8's heap and the buffer pools (about +50-70 MB over the
  // first ~64 MiB, then flat: measured with 16, 48, 96 and 200 MiB in a row); what must stay bounded
  // is the growth while a large transfer runs, so warm up with 64 MiB first.
  const first = serverMemory();
  assert.is((await postArchive(tarStream(8, 8 * MiB).body)).status, 201);
  console.error(
    `[datapath] first 64 MiB upload after start: server peak RSS ${(first.peakKb / 1024).toFixed(0)} -> ${(serverMemory().peakKb / 1024).toFixed(0)} MB`,
  );
  // The kernel's peak (VmHWM) restarts at the current RSS, so the peak after is the transfer's own.
  resetPeakRss(stack.server.process.pid!);
  const before = serverMemory();
  const started = Date.now();
  const { body, digests } = tarStream(25, 8 * MiB);
  const res = await postArchive(body);
  const seconds = (Date.now() - started) / 1000;
  const after = serverMemory();
  assert.is(res.status, 201, JSON.stringify(res.body));
  assert.is(res.body.storage, 'pvc');
  assert.is(res.body.files, 25);
  assert.is(res.body.bytes, 200 * MiB);
  const growthMb = (after.peakKb - before.rssKb) / 1024;
  console.error(
    `[datapath] 200 MiB streamed upload: ${seconds.toFixed(1)} s (${(200 / seconds).toFixed(0)} MiB/s), server RSS ${(before.rssKb / 1024).toFixed(0)} MB, peak during the upload ${(after.peakKb / 1024).toFixed(0)} MB (+${growthMb.toFixed(1)} MB)`,
  );
  // Bounded, not proportional to the bytes (buffering would be several times them). The goal's 32 MB
  // is measured by bench/ on the bundled server; this source-run server's garbage collector, under the
  // test load, lets freed chunks accumulate a little longer, so the guard leaves it some room.
  assert.ok(growthMb <= 64, `peak RSS grew by ${growthMb.toFixed(1)} MB during a 200 MiB upload`);

  // The bytes on the volume are the bytes sent, in a directory named by the upload only when complete.
  const dirs = entriesOnVolume();
  assert.not.ok(
    dirs.some((d) => d.startsWith('.partial-')),
    `no partial upload left: ${dirs}`,
  );
  const uploaded = uploadPath(res.body.upload);
  assert.ok(dirs.includes(path.basename(uploaded)));
  for (const [name, digest] of digests) {
    const onDisk = createHash('sha256')
      .update(fs.readFileSync(path.join(workDir, uploaded, name)))
      .digest('hex');
    assert.is(onDisk, digest, name);
  }

  // The signed reference works for a submit, and the job copies the code from the volume.
  const job = await alice('POST', 'api/v1/jobs', { json: { name: 'streamed', image: 'python', command: ['ls'], upload: res.body.upload } });
  assert.is(job.status, 201, JSON.stringify(job.body));
  const created = await admin.batch.readNamespacedJob({ name: job.body.name ?? job.body.metadata?.name, namespace: aliceNs });
  const copy = created.spec!.template.spec!.initContainers!.find((c) => c.name === 'copy-code')!;
  assert.match(copy.command!.join(' '), `/uploads/${uploaded}`);
});

streamed('path traversal after 32 MiB of good files is refused mid-stream and leaves nothing', async () => {
  const before = entriesOnVolume();
  const evil = writeTar([{ path: '../../escaped.txt', type: 'file', mode: 0o644, data: Buffer.from('pwned') }]);
  // writeTar refuses nothing; the sanitizer must. Only the entry's header block and data follow.
  const { body } = tarStream(32, MiB, evil);
  const res = await postArchive(body);
  assert.is(res.status, 400, JSON.stringify(res.body));
  assert.is(res.body.reason, 'InvalidArchive');
  assert.match(res.body.detail, /escapes the upload root/);
  assert.equal(entriesOnVolume(), before, 'the volume holds exactly what it held before');
  assert.not.ok(fs.existsSync(path.join(workDir, '..', 'escaped.txt')));
  assert.not.ok(fs.existsSync(path.join(path.dirname(workDir), '..', 'escaped.txt')));
});

streamed('a symlink pointing out of the upload is refused and leaves nothing', async () => {
  const before = entriesOnVolume();
  const res = await postArchive(
    writeTar([
      { path: 'a.py', type: 'file', mode: 0o644, data: Buffer.from('x') },
      { path: 'link', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: '../../../etc/passwd' },
    ]),
  );
  assert.is(res.status, 400);
  assert.match(res.body.detail, /points outside/);
  assert.equal(entriesOnVolume(), before);
});

streamed('a tar.gz streams too; a corrupt gzip is a 400', async () => {
  const tgz = gzipSync(writeTar([{ path: 'main.py', type: 'file', mode: 0o644, data: Buffer.from('print("gz")\n') }]));
  const res = await postArchive(tgz, 'application/gzip');
  assert.is(res.status, 201, JSON.stringify(res.body));
  assert.is(fs.readFileSync(path.join(workDir, uploadPath(res.body.upload), 'main.py'), 'utf8'), 'print("gz")\n');
  const before = entriesOnVolume();
  const corrupt = Buffer.from(tgz);
  corrupt.fill(0x55, 20, 40);
  const bad = await postArchive(corrupt, 'application/gzip');
  assert.is(bad.status, 400, JSON.stringify(bad.body));
  assert.equal(entriesOnVolume(), before);
});

streamed('more than the upload limit is a 413 and leaves nothing', async () => {
  const before = entriesOnVolume();
  const { body } = tarStream(40, 8 * MiB);
  const res = await postArchive(body);
  assert.is(res.status, 413, JSON.stringify(res.body));
  assert.equal(entriesOnVolume(), before);
});

const multipart = suite('multipart uploads too large to hold');
// The last suite: it stops the stack.
multipart.after(async () => {
  await stack.stop();
  fs.rmSync(spoolDir, { recursive: true, force: true });
});

/** What upload spools left in the server's temporary directory. */
const spools = () => fs.readdirSync(spoolDir).filter((name) => name.startsWith('kbatch-upload-'));

/** A zip of the upstream CLI's shape (deflated members), with `bytes` of random data in one file. */
function bigZip(bytes: number): { zip: Buffer; data: Buffer } {
  const data = randomBytes(bytes);
  const zip = writeZip([
    { path: 'model/', type: 'directory', mode: 0o755, data: Buffer.alloc(0) },
    { path: 'model/weights.bin', type: 'file', mode: 0o644, data },
    { path: 'main.py', type: 'file', mode: 0o644, data: Buffer.from('print("big")\n') },
  ]);
  return { zip, data };
}

async function postForm(pathname: string, form: FormData) {
  const answer = await postFormFresh(new URL(pathname, stack.serviceUrl), { authorization: `token ${stack.hub.tokens.alice}` }, form);
  return { status: answer.status, body: JSON.parse(answer.text) as Record<string, any> };
}

multipart('a 24 MiB zip part is spooled, streamed into the volume intact, and its spool removed', async () => {
  const { zip, data } = bigZip(24 * MiB);
  const form = new FormData();
  form.append('archive', new Blob([new Uint8Array(zip)]), 'code.zip');
  const res = await postForm('api/v1/uploads', form);
  assert.is(res.status, 201, JSON.stringify(res.body));
  assert.is(res.body.storage, 'pvc');
  assert.is(res.body.files, 2);
  assert.is(res.body.bytes, data.length + 'print("big")\n'.length);
  const stored = path.join(workDir, uploadPath(res.body.upload));
  assert.ok(fs.readFileSync(path.join(stored, 'model/weights.bin')).equals(data));
  assert.is(fs.readFileSync(path.join(stored, 'main.py'), 'utf8'), 'print("big")\n');
  assert.equal(spools(), []);
});

multipart('code sent with a submit goes to the volume first; the job copies it from there', async () => {
  const { zip, data } = bigZip(8 * MiB);
  const form = new FormData();
  form.append('spec', JSON.stringify({ name: 'bigcode', image: 'python', command: ['python', 'main.py'] }));
  form.append('archive', new Blob([new Uint8Array(zip)]), 'code.zip');
  const res = await postForm('api/v1/jobs', form);
  assert.is(res.status, 201, JSON.stringify(res.body));
  const job = await admin.batch.readNamespacedJob({ name: res.body.name, namespace: aliceNs });
  const copy = job.spec!.template.spec!.initContainers!.find((c) => c.name === 'copy-code')!;
  const stored = /"\/uploads\/(uploads\/[^"/]+)\/\."/.exec(copy.command!.join(' '))?.[1];
  assert.ok(stored, copy.command!.join(' '));
  assert.ok(fs.readFileSync(path.join(workDir, stored!, 'model/weights.bin')).equals(data));
  assert.equal(spools(), []);
});

multipart('a zip whose central directory lies is a 400 and leaves nothing, on the volume or in the spool', async () => {
  const before = entriesOnVolume();
  const { zip } = bigZip(6 * MiB);
  // The end-of-central-directory record's offset, pointed past the end of the file.
  zip.writeUInt32LE(zip.length + 1024, zip.length - 6);
  const form = new FormData();
  form.append('archive', new Blob([new Uint8Array(zip)]), 'code.zip');
  const res = await postForm('api/v1/uploads', form);
  assert.is(res.status, 400, JSON.stringify(res.body));
  assert.is(res.body.reason, 'InvalidArchive');
  assert.equal(entriesOnVolume(), before);
  assert.equal(spools(), []);
});

streamed.run();
multipart.run();
