/**
 * Hostile uploads through the real stack (JupyterHub's proxy in front of the one-process server,
 * control plane + KWOK behind it): a multipart body cut short, corrupt and lying archives and an
 * oversized upload each get a JSON 4xx with the contract reason, the server stays up, and nothing
 * is stored in the uploader's namespace.
 */
import { crc32, deflateRawSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, postFormFresh } from './helpers.ts';

const stack = await startStack();
const token = stack.hub.tokens.alice!;
const alice = client(stack.serviceUrl, token);
const admin = adminClients(stack.cluster.adminKubeconfig);
const namespace = ((await alice('GET', 'authorized')).body as { namespace: string }).namespace;

interface Answer {
  status: number;
  contentType: string;
  body: any;
}

/** Posts exact bytes through the Hub, as alice. */
async function post(path: string, body: Uint8Array | string, contentType: string): Promise<Answer> {
  const response = await fetch(new URL(path, stack.serviceUrl), {
    method: 'POST',
    headers: { authorization: `token ${token}`, 'content-type': contentType },
    body: typeof body === 'string' ? body : new Blob([body as Uint8Array<ArrayBuffer>]),
  });
  const text = await response.text();
  const type = response.headers.get('content-type') ?? '';
  return { status: response.status, contentType: type, body: type.includes('json') ? JSON.parse(text) : text };
}

function archiveForm(bytes: Buffer, name = 'code.zip'): FormData {
  const form = new FormData();
  form.append('archive', new Blob([new Uint8Array(bytes)]), name);
  return form;
}

async function postForm(path: string, form: FormData): Promise<Answer> {
  const { status, contentType, text } = await postFormFresh(new URL(path, stack.serviceUrl), { authorization: `token ${token}` }, form);
  return { status, contentType, body: contentType.includes('json') ? JSON.parse(text) : text };
}

function assertRefused(answer: Answer, status: number, reason: string) {
  assert.match(answer.contentType, /application\/json/, `a JSON answer, not ${JSON.stringify(answer.body).slice(0, 200)}`);
  assert.is(answer.status, status, JSON.stringify(answer.body));
  // Until the router sets `reason` on every error, a plain 400 carries none (BadRequest is its default).
  assert.is(answer.body.reason ?? 'BadRequest', reason, JSON.stringify(answer.body));
  assert.type(answer.body.detail, 'string');
}

/** A one-entry zip whose central directory can lie. */
function zip(data: Buffer, lie: { size?: number; localOffset?: number; corrupt?: boolean } = {}): Buffer {
  const name = Buffer.from('main.py');
  const compressed = Buffer.from(deflateRawSync(data));
  if (lie.corrupt) compressed.fill(0xff, 2, 8);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(8, 8);
  local.writeUInt32LE(crc32(data), 14);
  local.writeUInt32LE(compressed.length, 18);
  local.writeUInt32LE(lie.size ?? data.length, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10);
  central.writeUInt32LE(crc32(data), 16);
  central.writeUInt32LE(compressed.length, 20);
  central.writeUInt32LE(lie.size ?? data.length, 24);
  central.writeUInt16LE(name.length, 28);
  central.writeUInt32LE(lie.localOffset ?? 0, 42);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(46 + name.length, 12);
  end.writeUInt32LE(30 + name.length + compressed.length, 16);
  return Buffer.concat([local, name, compressed, central, name, end]);
}

const code = Buffer.from('print("hello")\n'.repeat(100));
const truncatedBody = '--x\r\nContent-Disposition: form-data; name="file"; filename="a.py"\r\n\r\nprint(1)';

const truncated = suite('a multipart body cut before its closing boundary, through the Hub');
truncated('is a JSON 400 on the upload route, and the server lives', async () => {
  assert.is(truncatedBody.length, 77);
  assertRefused(await post('api/v1/uploads', truncatedBody, 'multipart/form-data; boundary=x'), 400, 'BadRequest');
  assert.is(stack.server.process.exitCode, null, 'the server process is still running');
  assert.is((await alice('GET', 'healthz')).status, 200);
});
truncated('is a JSON 400 on the submit route too, every time', async () => {
  for (let i = 0; i < 20; i++)
    assertRefused(await post('api/v1/jobs', truncatedBody, 'multipart/form-data; boundary=x'), 400, 'BadRequest');
  assert.is(stack.server.process.exitCode, null);
});
truncated.run();

const archives = suite('hostile archives, through the Hub');
archives('a corrupt deflate stream is 400 InvalidArchive', async () => {
  assertRefused(await postForm('api/v1/uploads', archiveForm(zip(code, { corrupt: true }))), 400, 'InvalidArchive');
});
archives('a zip bomb whose central directory lies about the size is 400 InvalidArchive', async () => {
  const answer = await postForm('api/v1/uploads', archiveForm(zip(Buffer.alloc(64 * 1024 * 1024), { size: 100 })));
  assertRefused(answer, 400, 'InvalidArchive');
  assert.match(answer.body.detail, /more than the 100 bytes/);
});
archives('a local header offset out of range is 400 InvalidArchive', async () => {
  assertRefused(await postForm('api/v1/uploads', archiveForm(zip(code, { localOffset: 0x7ffffff0 }))), 400, 'InvalidArchive');
});
archives('a multipart submit with a corrupt archive is 400 InvalidArchive and creates no job', async () => {
  const form = archiveForm(zip(code, { corrupt: true }));
  form.append('spec', JSON.stringify({ name: 'hostile', image: 'busybox', command: ['true'] }));
  assertRefused(await postForm('api/v1/jobs', form), 400, 'InvalidArchive');
});
archives('the upstream-compatible submit refuses a lying or out-of-range zip with 400 InvalidArchive', async () => {
  const job = {
    kind: 'Job',
    metadata: { name: 'upstream-hostile' },
    spec: { template: { spec: { containers: [{ name: 'job', image: 'busybox', command: ['true'] }] } } },
  };
  for (const bytes of [
    zip(Buffer.alloc(16 * 1024 * 1024), { size: 10 }),
    zip(code, { localOffset: 0x7ffffff0 }),
    zip(code, { corrupt: true }),
  ]) {
    const answer = await post(
      'jobs/',
      JSON.stringify({ job, code: { binary_data: { code: bytes.toString('base64') } } }),
      'application/json',
    );
    assertRefused(answer, 400, 'InvalidArchive');
  }
});
archives.run();

const oversized = suite('an upload over the limit, through the Hub');
oversized("always gets the JSON 413 (never the proxy's 503), however far over", async () => {
  for (const mib of [9, 9, 9, 40, 40]) {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(Buffer.alloc(mib * 1024 * 1024, 7))]), 'big.bin');
    assertRefused(await postForm('api/v1/uploads', form), 413, 'UploadTooLarge');
  }
  assert.is((await alice('GET', 'healthz')).status, 200);
});
oversized.run();

const aftermath = suite('after the hostile uploads');
aftermath('the server is alive and answers', async () => {
  assert.is(stack.server.process.exitCode, null);
  assert.is((await alice('GET', 'healthz')).status, 200);
  assert.is((await alice('GET', 'api/v1/jobs')).status, 200);
});
aftermath("nothing was stored in alice's namespace", async () => {
  const [configMaps, jobs, secrets, claims] = await Promise.all([
    admin.core.listNamespacedConfigMap({ namespace }).then((l) => l.items.filter((c) => c.metadata?.name !== 'kube-root-ca.crt')),
    admin.batch.listNamespacedJob({ namespace }).then((l) => l.items),
    admin.core.listNamespacedSecret({ namespace }).then((l) => l.items.filter((s) => s.type !== 'kubernetes.io/service-account-token')),
    admin.core.listNamespacedPersistentVolumeClaim({ namespace }).then((l) => l.items),
  ]);
  assert.equal(
    configMaps.map((c) => c.metadata?.name),
    [],
    'no code ConfigMaps',
  );
  assert.equal(
    jobs.map((j) => j.metadata?.name),
    [],
    'no jobs or upload writers',
  );
  assert.equal(
    secrets.map((s) => s.metadata?.name),
    [],
    'no secrets',
  );
  assert.equal(
    claims.map((c) => c.metadata?.name),
    [],
    'no upload volume',
  );
});
aftermath.after(() => stack.stop());
aftermath.run();
