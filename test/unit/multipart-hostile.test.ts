/**
 * Hostile multipart bodies against a real HTTP server on loopback, through the real router: every
 * truncated, malformed or oversized body is a JSON 4xx for that request with the right reason,
 * nothing is thrown outside the request (the process would exit), the request socket is never
 * destroyed before the answer is written, and a client that goes away does not leave the parse
 * hanging.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRouter } from '../../lib/http/router.ts';
import { BadRequest } from '../../lib/http/errors.ts';
import { writeTar } from '../../lib/uploads/archive.ts';
import { codeFromMultipart } from '../../lib/uploads/code.ts';
import { parseMultipart, withMultipart } from '../../lib/uploads/multipart.ts';
import type { IncomingRequest } from '../../lib/http/router.ts';

const limits = { maxBytes: 1024 * 1024, maxFiles: 5 };
const escaped: unknown[] = [];
process.on('uncaughtException', (error) => escaped.push(error));
process.on('unhandledRejection', (error) => escaped.push(error));

interface Observed {
  settled: number;
  socketDestroyedWhenRefused: boolean[];
}
const observed: Observed = { settled: 0, socketDestroyedWhenRefused: [] };

const route = createRouter('', [
  {
    method: 'POST',
    path: '/upload',
    handler: async (ctx) => {
      try {
        return await withMultipart(ctx.req, limits, (multipart) => {
          const upload = codeFromMultipart(multipart, limits);
          return { status: 201, json: { files: upload.kind === 'archive' ? upload.files : 0, fields: Object.keys(multipart.fields) } };
        });
      } catch (error) {
        observed.socketDestroyedWhenRefused.push(ctx.req.socket.destroyed);
        throw error;
      } finally {
        observed.settled++;
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
  headers: string;
  body: any;
}

/**
 * Sends exact bytes. `declaredLength` may exceed what is sent: the answer is then read while the
 * client still owes body bytes, as a proxy in front of the server would.
 */
function send(
  body: Buffer | string,
  options: { contentType?: string; declaredLength?: number; thenAbort?: boolean } = {},
): Promise<Answer | undefined> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1');
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write(
        `POST /upload HTTP/1.1\r\nHost: test\r\nContent-Type: ${options.contentType ?? 'multipart/form-data; boundary=x'}\r\nContent-Length: ${options.declaredLength ?? bytes.length}\r\n\r\n`,
      );
      socket.write(bytes);
      if (options.thenAbort) {
        setTimeout(() => {
          socket.destroy();
          resolve(undefined);
        }, 50);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const text = received.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = text.slice(0, headEnd);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1);
      if (received.length < headEnd + 4 + length) return;
      socket.destroy();
      const json = received.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8');
      resolve({ status: Number(head.split(' ')[1]), headers: head, body: JSON.parse(json) });
    });
  });
}

const part = (headers: string, data: string | Buffer) =>
  Buffer.concat([
    Buffer.from(`--x\r\n${headers}\r\n\r\n`, 'latin1'),
    Buffer.isBuffer(data) ? data : Buffer.from(data),
    Buffer.from('\r\n'),
  ]);
const filePart = (name: string, data: string | Buffer, field = 'file') =>
  part(`Content-Disposition: form-data; name="${field}"; filename="${name}"`, data);
const close = Buffer.from('--x--\r\n');

async function expectRefusal(answer: Answer | undefined, status: number, reason: string, detail?: RegExp) {
  assert.ok(answer, 'an answer');
  assert.is(answer!.status, status, JSON.stringify(answer!.body));
  assert.match(answer!.headers, /content-type: application\/json/i);
  assert.is(answer!.body.reason ?? (status === 400 ? 'BadRequest' : undefined), reason, JSON.stringify(answer!.body));
  if (detail) assert.match(answer!.body.detail, detail);
  await settleDown();
}

/** Gives stray stream errors time to surface, then checks none escaped the request. */
async function settleDown() {
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(escaped.map(String), [], 'nothing thrown outside the request');
  assert.not.ok(observed.socketDestroyedWhenRefused.some(Boolean), 'the request socket is never destroyed before the answer');
}

const truncated = suite('a multipart body cut short');
truncated('the 77-byte body cut before its closing boundary is a 400, and the process lives', async () => {
  const body = '--x\r\nContent-Disposition: form-data; name="file"; filename="a.py"\r\n\r\nprint(1)';
  assert.is(body.length, 77);
  await expectRefusal(await send(body), 400, 'BadRequest', /Unexpected end of form/);
});
truncated('cut inside a part header', async () => expectRefusal(await send('--x\r\nContent-Disposition: form-da'), 400, 'BadRequest'));
truncated('cut right after the first boundary', async () => expectRefusal(await send('--x\r\n'), 400, 'BadRequest'));
truncated('cut inside a field', async () =>
  expectRefusal(await send('--x\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{"image"'), 400, 'BadRequest'),
);
truncated('cut after a complete part, before the next', async () =>
  expectRefusal(await send(Buffer.concat([filePart('a.py', 'x'), Buffer.from('--x\r\nContent-Disp')])), 400, 'BadRequest'),
);
truncated('two hundred truncated bodies in a row leave the server answering', async () => {
  for (let i = 0; i < 200; i++) {
    const answer = await send(`--x\r\nContent-Disposition: form-data; name="file"; filename="a${i}.py"\r\n\r\n${'y'.repeat(i)}`);
    assert.is(answer?.status, 400);
  }
  await settleDown();
  const ok = await send(Buffer.concat([filePart('a.py', 'print(1)'), close]));
  assert.is(ok?.status, 201);
});
truncated.run();

const malformed = suite('a malformed multipart body');
malformed('no boundary parameter', async () =>
  expectRefusal(await send('whatever', { contentType: 'multipart/form-data' }), 400, 'BadRequest', /Malformed multipart/),
);
malformed('a body that never shows its boundary', async () => expectRefusal(await send('just some bytes\r\n\r\n'), 400, 'BadRequest'));
malformed('a part header without a colon', async () =>
  expectRefusal(await send(Buffer.concat([Buffer.from('--x\r\nnot a header\r\n\r\ndata\r\n'), close])), 400, 'BadRequest'),
);
malformed('a part header larger than busboy accepts', async () =>
  expectRefusal(await send(Buffer.concat([Buffer.from(`--x\r\nX-Long: ${'h'.repeat(90_000)}\r\n\r\ndata\r\n`), close])), 400, 'BadRequest'),
);
malformed('two archives', async () =>
  expectRefusal(
    await send(
      Buffer.concat([filePart('a.tgz', gzipSync(writeTar([])), 'archive'), filePart('b.tgz', gzipSync(writeTar([])), 'archive'), close]),
    ),
    400,
    'InvalidArchive',
    /one archive/,
  ),
);
malformed('an archive and loose files', async () =>
  expectRefusal(
    await send(Buffer.concat([filePart('a.tgz', gzipSync(writeTar([])), 'archive'), filePart('b.py', 'x'), close])),
    400,
    'InvalidArchive',
    /not both/,
  ),
);
malformed('a corrupt archive part', async () =>
  expectRefusal(
    await send(Buffer.concat([filePart('code.zip', Buffer.from('PK\u0003\u0004 garbage that is not a zip'), 'archive'), close])),
    400,
    'InvalidArchive',
  ),
);
malformed('a file name with a CR (RFC 5987 encoded)', async () => {
  const body = Buffer.concat([part('Content-Disposition: form-data; name="file"; filename*=utf-8\'\'evil%0Dname.py', 'x'), close]);
  await expectRefusal(await send(body), 400, 'InvalidArchive', /control character/);
});
malformed('a file name that climbs out of /code', async () =>
  expectRefusal(await send(Buffer.concat([filePart('../../etc/passwd', 'x'), close])), 400, 'InvalidArchive', /escapes/),
);
malformed('a buffered body (functions-framework already read it) cut short', async () => {
  const req = {
    headers: { 'content-type': 'multipart/form-data; boundary=x' },
    rawBody: Buffer.from('--x\r\nContent-Disposition: form-data; name="file"; filename="a.py"\r\n\r\nprint(1)'),
  } as unknown as IncomingRequest;
  const error = await parseMultipart(req, limits).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof BadRequest, String(error));
  await settleDown();
});
malformed.run();

const oversized = suite('an oversized multipart body');
oversized('a file over the limit is a JSON 413 read while the client is still sending', async () => {
  const head = Buffer.from('--x\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n');
  // Declares 3 MiB, sends 1.5 MiB and waits: the answer must come without the rest of the body.
  const answer = await send(Buffer.concat([head, Buffer.alloc(1536 * 1024, 1)]), { declaredLength: head.length + 3 * 1024 * 1024 });
  await expectRefusal(answer, 413, 'UploadTooLarge', /larger than 1048576 bytes/);
});
oversized('loose files over the total limit', async () => {
  const parts = Array.from({ length: 3 }, (_, i) => filePart(`f${i}.bin`, Buffer.alloc(400 * 1024)));
  await expectRefusal(await send(Buffer.concat([...parts, close])), 413, 'UploadTooLarge');
});
oversized('more file parts than allowed', async () => {
  const parts = Array.from({ length: 6 }, (_, i) => filePart(`f${i}.py`, 'x'));
  await expectRefusal(await send(Buffer.concat([...parts, close])), 413, 'UploadTooLarge', /more than 5 files/);
});
oversized('an archive that unpacks past the limit', async () => {
  const bomb = gzipSync(writeTar([{ path: 'zeros', type: 'file', mode: 0o644, data: Buffer.alloc(4 * 1024 * 1024) }]));
  await expectRefusal(await send(Buffer.concat([filePart('code.tar.gz', bomb, 'archive'), close])), 413, 'UploadTooLarge');
});
oversized('a form field over 1 MiB', async () => {
  const answer = await send(Buffer.concat([part('Content-Disposition: form-data; name="spec"', 'x'.repeat(1024 * 1024 + 10)), close]));
  assert.is(answer?.status, 413);
  await settleDown();
});
oversized.run();

const gone = suite('a client that goes away');
gone('mid-body: the parse settles instead of hanging, and nothing escapes', async () => {
  const before = observed.settled;
  const head = Buffer.from('--x\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n');
  await send(Buffer.concat([head, Buffer.alloc(64 * 1024)]), { declaredLength: head.length + 512 * 1024, thenAbort: true });
  const deadline = Date.now() + 2000;
  while (observed.settled === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.is(observed.settled, before + 1, 'the handler finished');
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(escaped.map(String), []);
});
gone('a sound upload still works afterwards', async () => {
  const answer = await send(
    Buffer.concat([
      part('Content-Disposition: form-data; name="spec"', '{}'),
      filePart('main.py', 'print(1)'),
      filePart('pkg/util.py', 'X = 1'),
      close,
    ]),
  );
  assert.is(answer?.status, 201);
  assert.equal(answer?.body, { files: 2, fields: ['spec'] });
});
gone.after(() => {
  server.closeAllConnections();
  server.close();
});
gone.run();
