// Upstream's submit body `{job, code: {binary_data: {code: "<base64 zip>"}}}` is read as it streams
// (issue 10): the code string is base64-decoded into a spool file, the rest parsed as JSON.parse
// would, wherever the chunks happen to split; malformed, oversized, deep JSON and non-base64 code
// get readJson's answers, and the spool is gone after every outcome.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { toHttpError } from '../../lib/http/errors.ts';
import { createRouter } from '../../lib/http/router.ts';
import { isSpooledCode, UpstreamBodyScanner, withUpstreamBody, type CodeEvent } from '../../lib/upstream/streaming-body.ts';

const MiB = 1024 * 1024;

/** Feeds `text` to a scanner cut at `cuts`; the parsed body with each code string as its decoded Buffer. */
function scan(text: string | Buffer, cuts: number[] = [], options: { maxJsonBytes?: number; maxCodeBytes?: number } = {}): unknown {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const codes: Buffer[][] = [];
  const ended = new Set<number>();
  const scanner = new UpstreamBodyScanner({
    maxJsonBytes: options.maxJsonBytes ?? MiB,
    maxDepth: 64,
    maxCodeBytes: options.maxCodeBytes ?? 32 * MiB,
    onCode: (event: CodeEvent) => {
      if (event.type === 'start') codes[event.id] = [];
      else if (event.type === 'data') codes[event.id]!.push(Buffer.from(event.bytes));
      else ended.add(event.id);
    },
  });
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    scanner.write(bytes.subarray(at, cut));
    at = cut;
  }
  return scanner.end((id) => {
    assert.ok(ended.has(id), 'a resolved code string was ended');
    return Buffer.concat(codes[id]!);
  });
}

/** What the route read before: JSON.parse, then Buffer.from(base64) of the code string. */
function reference(text: string): unknown {
  const body = JSON.parse(text);
  for (const name of ['binary_data', 'binaryData']) {
    const binary = body?.code?.[name];
    if (binary && typeof binary === 'object' && !Array.isArray(binary) && typeof binary.code === 'string')
      binary.code = Buffer.from(binary.code, 'base64');
  }
  return body;
}

function refusal(fn: () => unknown): { status: number; reason: string; field?: string; message: string } {
  try {
    fn();
  } catch (error) {
    const http = toHttpError(error);
    return { status: http.status, reason: http.reason, field: (http as { field?: string }).field, message: http.message };
  }
  throw new Error('expected a refusal');
}

const job = {
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name: 'ü-job', labels: { a: 'b"c\\d' } },
  spec: { template: { spec: { containers: [{ name: 'x', image: 'busybox', command: ['echo', 'hi\n'] }] } } },
};
const smallBody = (code: Buffer) =>
  JSON.stringify({ job, code: { binary_data: { code: code.toString('base64') }, metadata: { name: 'c' } } });

// ---- chunk boundaries ----

const boundaries = suite('upstream body: chunk boundaries do not matter');

boundaries('a small body split at every offset parses as JSON.parse + Buffer.from', () => {
  for (const size of [0, 1, 2, 3, 4, 5, 10]) {
    const text = smallBody(randomBytes(size)).replace(/\//g, '\\/');
    const expected = reference(text);
    for (let cut = 0; cut <= text.length; cut++) assert.equal(scan(text, [cut]), expected, `size ${size}, cut at ${cut}`);
    // and every byte its own chunk
    assert.equal(scan(text, [...Array(Buffer.byteLength(text)).keys()]), expected);
  }
});

boundaries('a 3 MiB body at random splits decodes to the same bytes', () => {
  const code = randomBytes(3 * MiB + 1);
  const text = smallBody(code);
  const expected = reference(text);
  for (let round = 0; round < 5; round++) {
    const cuts = [...Array(200)].map(() => Math.floor(Math.random() * text.length)).sort((a, b) => a - b);
    assert.equal(scan(text, cuts), expected);
  }
});

boundaries('binaryData, unpadded base64 and a code string before the job decode too', () => {
  const code = randomBytes(20);
  for (const text of [
    JSON.stringify({ code: { binaryData: { code: code.toString('base64') } }, job }),
    JSON.stringify({ code: { binary_data: { code: code.toString('base64').replace(/=+$/, '') } }, job }),
    ' \n{ "code" : { "binary_data" : { "code" : "' + code.toString('base64') + '" } } , "job" : {} }\n',
  ])
    for (let cut = 0; cut <= text.length; cut++) {
      const body = scan(text, [cut]) as { code: Record<string, { code: Buffer }> };
      assert.equal((body.code.binary_data ?? body.code.binaryData)!.code, code);
    }
});

boundaries('strings named code elsewhere, and keys with escapes, are left to JSON.parse', () => {
  const b64 = randomBytes(9).toString('base64');
  const texts = [
    JSON.stringify({ job: { code: { binary_data: { code: 'not base64 at all!' } } }, code: null }),
    JSON.stringify({ code: [{ binary_data: { code: 'x y' } }] }),
    JSON.stringify({ code: { binary_data: [{ code: 'x y' }], other: { code: b64 } } }),
    `{"co\\u0064e": {"binary\\u005fdata": {"\\u0063ode": "${b64}"}}}`,
    `{"code": {"binary_data": {"code": "${b64}", "code2": "a\\"b"}}}`,
  ];
  for (const text of texts) for (let cut = 0; cut <= text.length; cut++) assert.equal(scan(text, [cut]), reference(text), text);
});

// ---- duplicates and shapes ----

const shapes = suite('upstream body: duplicate keys and odd shapes behave as JSON.parse');

shapes('the last of duplicate code strings wins; a later null or number replaces it', () => {
  const a = randomBytes(7).toString('base64');
  const b = randomBytes(11).toString('base64');
  for (const text of [
    `{"code": {"binary_data": {"code": "${a}", "code": "${b}"}}}`,
    `{"code": {"binary_data": {"code": "${a}"}}, "code": {"binary_data": {"code": "${b}"}}}`,
    `{"code": {"binary_data": {"code": "${a}"}}, "code": null}`,
    `{"code": {"binary_data": {"code": "${a}"}, "binary_data": {"code": 5}}}`,
    `{"code": {"binary_data": {"code": 5}}}`,
    `{"code": {"binary_data": {"code": {"x": "${a}"}}}}`,
  ])
    assert.equal(scan(text), reference(text), text);
});

shapes('a top level that is not an object is parsed as it is', () => {
  for (const text of ['[1, {"code": {"binary_data": {"code": "AAAA"}}}]', '"code"', '42', 'null'])
    assert.equal(scan(text), reference(text));
});

// ---- escapes and base64 ----

const base64 = suite('upstream body: the code string is strict base64, JSON escapes decoded');

base64('\\/ and \\u escapes of base64 characters decode like JSON.parse', () => {
  const code = randomBytes(300);
  const plain = code.toString('base64');
  const escaped = plain.replace(/\//g, '\\/').replace(/A/g, '\\u0041').replace(/\+/g, '\\u002B').replace(/=/g, '\\u003d');
  const text = `{"code": {"binary_data": {"code": "${escaped}"}}}`;
  for (let cut = 0; cut <= text.length; cut++) assert.equal(scan(text, [cut]), reference(text));
});

base64('anything that is not RFC 4648 base64 is a 400 on code.binary_data.code', () => {
  for (const value of [
    'AAA A',
    'AA\\nAA',
    'AAAA\\t',
    'AA-_',
    'AA*A',
    'A',
    'AAAAA',
    'AA=A',
    'A===',
    '=AAA',
    'AAAA==',
    'AA==AAAA',
    'AAA\\u00e9',
    'AA\\"A',
    'AA\\\\A',
    'AAé',
  ]) {
    const text = `{"code": {"binary_data": {"code": "${value}"}}}`;
    const refused = refusal(() => scan(text));
    assert.equal([refused.status, refused.field], [400, 'code.binary_data.code'], value);
  }
});

base64('a malformed escape or a raw control character in the code string is invalid JSON', () => {
  for (const value of ['AA\\x', 'AA\\u00G0', 'AA\u0001A']) {
    const refused = refusal(() => scan(`{"code": {"binary_data": {"code": "${value}"}}}`));
    assert.equal([refused.status, refused.reason, refused.message], [400, 'BadRequest', 'Request body is not valid JSON'], value);
  }
});

// ---- malformed, oversized, deep ----

const limits = suite('upstream body: readJson answers for malformed, oversized and deep JSON');

limits('malformed JSON is a 400, as readJson says it', () => {
  const b64 = 'AAAA';
  for (const text of [
    '{',
    '{"job": }',
    `{"code": {"binary_data": {"code": "${b64}"`,
    `{"code": {"binary_data": {"code": "${b64}"}}}}`,
    `{"code": {"binary_data": {"code": "${b64}" "x": 1}}}`,
    `{"code" {"binary_data": {"code": "${b64}"}}}`,
    '{"job": "unterminated',
    ' ',
    "{'job': 1}",
  ]) {
    const refused = refusal(() => scan(text));
    assert.equal([refused.status, refused.message], [400, 'Request body is not valid JSON'], text);
  }
  assert.equal(refusal(() => scan('')).message, 'Request body is empty; expected JSON');
});

limits('members other than the code over the JSON limit are a 413; the code may be far larger', () => {
  const big = JSON.stringify({ job: { pad: 'x'.repeat(MiB) }, code: null });
  const refused = refusal(() => scan(big, [1000, 500_000]));
  assert.equal([refused.status, refused.reason], [413, 'PayloadTooLarge']);
  const code = randomBytes(2 * MiB);
  const text = smallBody(code);
  assert.equal(scan(text, [], { maxJsonBytes: 4096 }), reference(text));
});

limits('code over the upload limit is a 413 UploadTooLarge while it streams', () => {
  const text = smallBody(randomBytes(4097));
  const refused = refusal(() => scan(text, [], { maxCodeBytes: 4096 }));
  assert.equal([refused.status, refused.reason], [413, 'UploadTooLarge']);
  const exact = smallBody(randomBytes(4096));
  assert.equal(scan(exact, [], { maxCodeBytes: 4096 }), reference(exact));
});

limits('duplicate code strings share one upload limit, and more than 8 are refused', () => {
  const a = randomBytes(3000).toString('base64');
  const twice = `{"code": {"binary_data": {"code": "${a}", "code": "${a}"}}}`;
  assert.equal(scan(twice, [], { maxCodeBytes: 6000 }), reference(twice));
  const refused = refusal(() => scan(twice, [], { maxCodeBytes: 5999 }));
  assert.equal([refused.status, refused.reason], [413, 'UploadTooLarge']);
  const many = (n: number) => `{"code": {"binary_data": {${Array(n).fill('"code": "AAAA"').join(', ')}}}}`;
  assert.equal(scan(many(8)), reference(many(8)));
  const tooMany = refusal(() => scan(many(9)));
  assert.equal([tooMany.status, tooMany.field], [400, 'code.binary_data.code']);
});

limits('nesting deeper than 64 levels is a 400; 64 is fine', () => {
  const nested = (depth: number) => `{"job": ${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
  assert.equal(scan(nested(64)), JSON.parse(nested(64)));
  const refused = refusal(() => scan(nested(65)));
  assert.equal([refused.status, refused.message], [400, 'Request body nests deeper than 64 levels']);
  // brackets inside strings do not count
  const text = JSON.stringify({ job: '['.repeat(100) });
  assert.equal(scan(text), JSON.parse(text));
});

// ---- over HTTP: the spool ----

const originalTmpdir = process.env.TMPDIR;
const temp = mkdtempSync(join(tmpdir(), 'kbatch-upstream-body-test-'));
process.env.TMPDIR = temp;
const seen = { settled: 0, spooled: [] as string[] };

const route = createRouter('', [
  {
    method: 'POST',
    path: '/jobs/',
    handler: async (ctx) => {
      try {
        return await withUpstreamBody(ctx.req, { maxCodeBytes: 4 * MiB }, (body) => {
          const code = (body as { code?: { binary_data?: { code?: unknown } } }).code?.binary_data?.code;
          seen.spooled = readdirSync(temp);
          if (!isSpooledCode(code)) return { json: { code: null } };
          const bytes = readFileSync(code.path);
          return { json: { size: code.size, sha256: code.sha256, read: createHash('sha256').update(bytes).digest('hex') } };
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

function send(
  body: Buffer,
  options: { thenAbort?: boolean; contentType?: string } = {},
): Promise<{ status: number; body: any } | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write(
        `POST /jobs/ HTTP/1.1\r\nHost: test\r\nContent-Type: ${options.contentType ?? 'application/json'}\r\nContent-Length: ${body.length + (options.thenAbort ? 100 : 0)}\r\n\r\n`,
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

async function spoolIsEmpty(settledBefore: number) {
  for (let i = 0; i < 100 && seen.settled === settledBefore; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(seen.settled > settledBefore, 'the request settled');
  for (let i = 0; i < 50 && readdirSync(temp).length; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(readdirSync(temp), [], 'no temporary file or directory left');
}

const spool = suite('upstream body over HTTP: the code waits in the spool, which is gone after every outcome');

spool('a 3 MiB code string lands in one spool file with its sha256; removed after the answer', async () => {
  const code = randomBytes(3 * MiB);
  const before = seen.settled;
  const answer = await send(Buffer.from(smallBody(code)));
  const sha = createHash('sha256').update(code).digest('hex');
  assert.equal(answer, { status: 200, body: { size: code.length, sha256: sha, read: sha } });
  assert.equal(seen.spooled.length, 1, 'one spool directory while in hand');
  await spoolIsEmpty(before);
});

spool('refusals (too large, not base64, malformed, wrong type) are JSON answers and leave nothing', async () => {
  const cases: [Buffer, number, string, string?][] = [
    [Buffer.from(smallBody(randomBytes(4 * MiB + 3))), 413, 'UploadTooLarge'],
    [Buffer.from(`{"code": {"binary_data": {"code": "${randomBytes(MiB).toString('base64')}!"}}}`), 400, 'BadRequest'],
    [Buffer.from(`{"code": {"binary_data": {"code": "${randomBytes(MiB).toString('base64')}"}}`), 400, 'BadRequest'],
    [Buffer.from(JSON.stringify({ job: 'x'.repeat(2 * MiB) })), 413, 'PayloadTooLarge'],
    [Buffer.from('{}'), 415, 'UnsupportedMediaType', 'text/plain'],
  ];
  for (const [body, status, reason, contentType] of cases) {
    const before = seen.settled;
    const answer = await send(body, contentType ? { contentType } : {});
    assert.equal([answer?.status, answer?.body.reason], [status, reason]);
    if (status !== 415) await spoolIsEmpty(before);
  }
});

spool('a client gone mid-code leaves nothing behind', async () => {
  const before = seen.settled;
  const body = Buffer.from(smallBody(randomBytes(2 * MiB)));
  await send(body.subarray(0, body.length - 100), { thenAbort: true });
  await spoolIsEmpty(before);
});

spool.after(() => {
  server.close();
  rmSync(temp, { recursive: true, force: true });
  if (originalTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = originalTmpdir;
});

boundaries.run();
shapes.run();
base64.run();
limits.run();
spool.run();
