// Multipart uploads wait on disk, not in memory (issue 10): the spool's files are private and gone
// after every outcome, a zip is read from the spool with positioned reads that check every offset the
// archive claims, large code streams out of the spool as a tar, and an unusable temp dir is a JSON 500.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, deflateRawSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRouter } from '../../lib/http/router.ts';
import { readTar } from '../../lib/uploads/archive.ts';
import { codeFromMultipart, inMemoryCodeBytes } from '../../lib/uploads/code.ts';
import { withMultipart } from '../../lib/uploads/multipart.ts';
import { spoolError } from '../../lib/uploads/spool.ts';
import { sanitizedTar } from '../../lib/uploads/tar-stream.ts';

const MiB = 1024 * 1024;
const limits = { maxBytes: 32 * MiB, maxFiles: 100 };
const originalTmpdir = process.env.TMPDIR;
const temp = mkdtempSync(join(tmpdir(), 'kbatch-spool-test-'));
process.env.TMPDIR = temp;

/** What the handler saw of the spool while the request was in hand, and how many requests settled. */
const seen = { spooled: [] as { mode: number; dirMode: number }[], settled: 0, tar: Buffer.alloc(0) };
const spooledNow = () =>
  readdirSync(temp)
    .filter((d) => d.startsWith('kbatch-upload-'))
    .flatMap((d) =>
      readdirSync(join(temp, d)).map((f) => ({
        mode: statSync(join(temp, d, f)).mode & 0o777,
        dirMode: statSync(join(temp, d)).mode & 0o777,
      })),
    );

const route = createRouter('', [
  {
    method: 'POST',
    path: '/upload',
    handler: async (ctx) => {
      try {
        return await withMultipart(ctx.req, limits, async (multipart) => {
          seen.spooled = spooledNow();
          const upload = codeFromMultipart(multipart, limits);
          if (upload.kind === 'archive') return { status: 201, json: { kind: upload.kind, files: upload.files } };
          // As a store would: the tar, checked again as it streams, read to its end.
          const { tar, refusal } = sanitizedTar(upload.open(), { gzip: upload.gzip, limits });
          const chunks: Buffer[] = [];
          const sink = new Writable({
            write(chunk: Buffer, _encoding, done) {
              chunks.push(chunk);
              done();
            },
          });
          await pipeline(tar, sink).catch((error: Error) => {
            throw refusal() ?? error;
          });
          seen.tar = Buffer.concat(chunks);
          return { status: 201, json: { kind: upload.kind, files: tar.summary().files } };
        });
      } finally {
        seen.settled++;
      }
    },
  },
]);
const server: Server = createServer((req, res) => void route(req, res));
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as { port: number }).port;

interface Answer {
  status: number;
  body: any;
}

/** Sends exact bytes (optionally fewer than declared, then goes away) and reads the JSON answer. */
function send(body: Buffer, options: { declaredLength?: number; thenAbort?: boolean } = {}): Promise<Answer | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write(
        `POST /upload HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: ${options.declaredLength ?? body.length}\r\n\r\n`,
      );
      socket.write(body, () => {
        if (!options.thenAbort) return;
        setTimeout(() => {
          socket.destroy();
          resolve(undefined);
        }, 100);
      });
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const text = received.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const length = Number(/content-length: (\d+)/i.exec(text.slice(0, headEnd))?.[1] ?? -1);
      if (received.length < headEnd + 4 + length) return;
      socket.destroy();
      resolve({
        status: Number(text.slice(0, headEnd).split(' ')[1]),
        body: JSON.parse(received.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8')),
      });
    });
  });
}

const filePart = (name: string, data: Buffer, field = 'file') =>
  Buffer.concat([
    Buffer.from(`--x\r\nContent-Disposition: form-data; name="${field}"; filename="${name}"\r\n\r\n`),
    data,
    Buffer.from('\r\n'),
  ]);
const close = Buffer.from('--x--\r\n');
const multipart = (...parts: Buffer[]) => Buffer.concat([...parts, close]);

/** Settles, then checks the spool holds nothing: every outcome removes it. */
async function spoolIsEmpty(settledBefore: number) {
  for (let i = 0; i < 100 && seen.settled === settledBefore; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(seen.settled > settledBefore, 'the request settled');
  assert.equal(readdirSync(temp), [], 'no temporary file or directory left');
}

// ---- a zip writer whose fields can lie ----

interface ZipMember {
  name: string;
  data: Buffer;
  method?: 0 | 8;
  /** Lies, applied to the central directory. */
  size?: number;
  compressedSize?: number;
  crc?: number;
  localOffset?: number;
}

function zip(members: ZipMember[], lie: { directoryOffset?: number } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const member of members) {
    const name = Buffer.from(member.name);
    const method = member.method ?? 0;
    const stored = method === 8 ? deflateRawSync(member.data) : member.data;
    const crc = crc32(member.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(member.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(member.crc ?? crc, 16);
    central.writeUInt32LE(member.compressedSize ?? stored.length, 20);
    central.writeUInt32LE(member.size ?? member.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    central.writeUInt32LE(member.localOffset ?? offset, 42);
    locals.push(local, name, stored);
    centrals.push(central, name);
    offset += 30 + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(lie.directoryOffset ?? offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

// Random, so deflate cannot shrink it and the zip is as large as its content.
const big = randomBytes(5 * MiB);
const text = Buffer.from('print("hello")\n'.repeat(20_000)); // 300 KB: compresses, spools

const spool = suite('multipart parts wait on disk');
spool('a part past 256 KiB is spooled to a 0600 file in a 0700 directory, removed after the answer', async () => {
  const settled = seen.settled;
  const answer = await send(multipart(filePart('main.py', text)));
  assert.is(answer?.status, 201, JSON.stringify(answer?.body));
  assert.equal(answer?.body, { kind: 'archive', files: 1 });
  assert.equal(seen.spooled, [{ mode: 0o600, dirMode: 0o700 }]);
  await spoolIsEmpty(settled);
});
spool('small parts stay in memory: nothing touches the disk', async () => {
  const answer = await send(multipart(filePart('a.py', Buffer.from('print(1)')), filePart('b.py', Buffer.from('print(2)'))));
  assert.equal(answer?.body, { kind: 'archive', files: 2 });
  assert.equal(seen.spooled, []);
});
spool(`code over ${inMemoryCodeBytes / MiB} MiB streams out of a spooled zip as a tar with the same files`, async () => {
  const settled = seen.settled;
  const answer = await send(
    multipart(
      filePart(
        'code.zip',
        zip([
          { name: 'data.bin', data: big },
          { name: 'main.py', data: text, method: 8 },
        ]),
        'archive',
      ),
    ),
  );
  assert.is(answer?.status, 201, JSON.stringify(answer?.body));
  assert.equal(answer?.body, { kind: 'stream', files: 2 });
  const back = readTar(seen.tar, limits);
  assert.ok(back.find((e) => e.path === 'data.bin')!.data.equals(big));
  assert.ok(back.find((e) => e.path === 'main.py')!.data.equals(text));
  await spoolIsEmpty(settled);
});
spool('loose files over the in-memory bound stream too', async () => {
  const answer = await send(multipart(filePart('data.bin', big), filePart('main.py', text)));
  assert.equal(answer?.body, { kind: 'stream', files: 2 });
  assert.ok(
    readTar(seen.tar, limits)
      .find((e) => e.path === 'data.bin')!
      .data.equals(big),
  );
});
spool.run();

const aborted = suite('a client that goes away mid-part');
aborted('leaves no temporary file, and the server answers the next upload', async () => {
  const settled = seen.settled;
  const head = Buffer.from('--x\r\nContent-Disposition: form-data; name="archive"; filename="code.zip"\r\n\r\n');
  await send(Buffer.concat([head, big.subarray(0, 2 * MiB)]), { declaredLength: head.length + 6 * MiB, thenAbort: true });
  await spoolIsEmpty(settled);
  assert.is((await send(multipart(filePart('main.py', text))))?.status, 201);
});
aborted('over the limit mid-part: a 413, and no temporary file', async () => {
  const settled = seen.settled;
  const answer = await send(
    multipart(
      filePart('a.bin', big),
      filePart('b.bin', big),
      filePart('c.bin', big),
      filePart('d.bin', big),
      filePart('e.bin', big),
      filePart('f.bin', big),
      filePart('g.bin', big),
    ),
  );
  assert.is(answer?.status, 413, JSON.stringify(answer?.body));
  await spoolIsEmpty(settled);
});
aborted.run();

const lies = suite('a spooled zip whose directory lies');
for (const [title, archive, detail] of [
  [
    'its central directory starts past the end',
    () => zip([{ name: 'data.bin', data: big }], { directoryOffset: 64 * MiB }),
    /central directory lies outside/,
  ],
  ['a member starts past the end', () => zip([{ name: 'data.bin', data: big, localOffset: 48 * MiB }]), /lies outside the archive/],
  [
    'a member runs past the end',
    () => zip([{ name: 'data.bin', data: big, compressedSize: 6 * MiB, size: 6 * MiB }]),
    /lies outside the archive/,
  ],
  ['a stored member declares two sizes', () => zip([{ name: 'data.bin', data: big, size: 1000 }]), /stored with two different sizes/],
  [
    'a streamed member inflates to more than declared',
    () =>
      zip([
        { name: 'data.bin', data: big },
        { name: 'main.py', data: text, method: 8, size: 1000 },
      ]),
    /inflates to more than the 1000 bytes/,
  ],
  [
    'a streamed member inflates to less than declared',
    () =>
      zip([
        { name: 'data.bin', data: big },
        { name: 'main.py', data: text, method: 8, size: text.length + 5000 },
      ]),
    /inflates to \d+ bytes, not the/,
  ],
  ['a streamed member fails its CRC', () => zip([{ name: 'data.bin', data: big, crc: 1234 }]), /fails its CRC check/],
  [
    'a small member claims far more compressed bytes than its data can take',
    () => zip([{ name: 'data.bin', data: big, method: 8, size: 10 }]),
    /inflates to more than the 10 bytes/,
  ],
] as const) {
  lies(`${title}: 400 InvalidArchive, and no temporary file`, async () => {
    const settled = seen.settled;
    const answer = await send(multipart(filePart('code.zip', archive(), 'archive')));
    assert.is(answer?.status, 400, JSON.stringify(answer?.body));
    assert.is(answer?.body.reason, 'InvalidArchive');
    assert.match(answer?.body.detail, detail);
    await spoolIsEmpty(settled);
  });
}
lies.run();

const unusable = suite('a temporary directory that cannot take the upload');
unusable('a missing temp dir is a JSON 500, and the server keeps answering', async () => {
  process.env.TMPDIR = join(temp, 'missing', 'deeper');
  try {
    const answer = await send(multipart(filePart('main.py', text)));
    assert.is(answer?.status, 500, JSON.stringify(answer?.body));
    assert.is(answer?.body.reason, 'Internal');
    assert.match(answer?.body.detail, /could not store this upload temporarily/);
  } finally {
    process.env.TMPDIR = temp;
  }
  assert.is((await send(multipart(filePart('main.py', text))))?.status, 201);
});
unusable('a full disk is a 503: try again later', () => {
  const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const error = spoolError(full);
  assert.is(error.status, 503);
  assert.is(error.reason, 'Unavailable');
});
unusable.after(() => {
  server.closeAllConnections();
  server.close();
  process.env.TMPDIR = originalTmpdir;
  rmSync(temp, { recursive: true, force: true });
});
unusable.run();
