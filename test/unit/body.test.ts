import { createServer, request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nestsDeeperThan, readJson } from '../../lib/http/body.ts';
import { Unauthorized } from '../../lib/http/errors.ts';
import { createRouter } from '../../lib/http/router.ts';

let authenticated = 0;
const handler = createRouter('/', [
  { method: 'POST', path: '/json', handler: async (ctx) => ({ json: { got: await readJson(ctx.req) } }) },
  { method: 'POST', path: '/small', handler: async (ctx) => ({ json: { got: await readJson(ctx.req, 1000) } }) },
  {
    method: 'POST',
    path: '/private',
    handler: async () => {
      authenticated++;
      throw new Unauthorized();
    },
  },
]);
const server = createServer((req, res) => void handler(req, res));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as { port: number }).port;

async function post(
  path: string,
  body: string | Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers, body });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), headers: res.headers };
}

const types = suite('JSON bodies: content type and encoding');
types('application/json, a +json type and a missing type (as FastAPI takes it) are parsed', async () => {
  assert.equal((await post('/json', '{"a":1}')).body, { got: { a: 1 } });
  assert.equal((await post('/json', '{"a":1}', { 'content-type': 'application/merge-patch+json; charset=UTF-8' })).body, { got: { a: 1 } });
  assert.equal((await post('/json', new TextEncoder().encode('{"a":1}'), {})).body, { got: { a: 1 } });
});
types('text/plain, forms, XML and multipart are 415 UnsupportedMediaType, never parsed', async () => {
  for (const type of [
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/xml',
    'text/xml',
    'multipart/form-data; boundary=x',
    'application/jsonx',
    'application/json; charset=latin1',
  ]) {
    const res = await post('/json', '{"a":1}', { 'content-type': type });
    assert.is(res.status, 415, type);
    assert.is(res.body.reason, 'UnsupportedMediaType', type);
  }
});
types('a compressed body is refused with 415 before a byte is inflated', async () => {
  const bomb = new Uint8Array(gzipSync(Buffer.alloc(16 * 1024 * 1024)));
  const res = await post('/json', bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
  assert.is(res.status, 415);
  assert.match(res.body.detail, /Content-Encoding "gzip"/);
  assert.is((await post('/json', '{"a":1}', { 'content-type': 'application/json', 'content-encoding': 'identity' })).status, 200);
});
types.run();

const limits = suite('JSON bodies: size, syntax and nesting');
limits('over the limit is 413 whether declared or streamed', async () => {
  const big = JSON.stringify({ data: 'x'.repeat(2000) });
  assert.is((await post('/small', big)).status, 413);
  const streamed = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(big));
      controller.close();
    },
  });
  const res = await fetch(`http://127.0.0.1:${port}/small`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: streamed,
    duplex: 'half',
  } as RequestInit);
  assert.is(res.status, 413);
  assert.is(((await res.json()) as { reason: string }).reason, 'PayloadTooLarge');
});
limits('the default limit is 1 MiB', async () => {
  assert.is((await post('/json', JSON.stringify({ data: 'x'.repeat(1024 * 1024) }))).status, 413);
  assert.is((await post('/json', JSON.stringify({ data: 'x'.repeat(1000 * 1000) }))).status, 200);
});
limits('malformed, empty and truncated JSON are 400 as JSON, never an HTML page', async () => {
  for (const body of ['{bad', '', '{"a":', '[1,2', '\u00ef\u00bb\u00bf{}', 'null garbage']) {
    const res = await post('/json', body);
    assert.is(res.status, 400, body);
    assert.is(res.body.reason, 'BadRequest');
    assert.not.match(JSON.stringify(res.body), /at |\.ts|\.js|node_modules/);
  }
});
limits('100,000 levels of nesting are a quick 400', async () => {
  const started = Date.now();
  const res = await post('/json', '['.repeat(100_000) + ']'.repeat(100_000));
  assert.is(res.status, 400);
  assert.match(res.body.detail, /nests deeper than 64/);
  assert.ok(Date.now() - started < 1000);
  assert.is((await post('/json', '{"a":'.repeat(64) + '1' + '}'.repeat(64))).status, 200);
});
limits('the nesting scan ignores brackets inside strings and escaped quotes', () => {
  assert.is(nestsDeeperThan(new TextEncoder().encode(JSON.stringify({ s: '[[[[[[[[[[' + '"\\[[[[' })), 2), false);
  assert.is(nestsDeeperThan(new TextEncoder().encode('[[["]]]"]]]'), 2), true);
});
limits.run();

const order = suite('answers before the body is read');
order('a refusal before reading a large body is answered, then the rest is drained and the connection stays usable', async () => {
  // 32 MiB sent without waiting: the handler refuses without reading. The client must read the JSON
  // and finish sending without a reset (a reset is what made the Hub's proxy answer its own HTML 503).
  const result = await new Promise<{ status: number; body: string; connection: string | undefined; errors: string[] }>((resolve) => {
    const errors: string[] = [];
    let response: { status: number; body: string; connection: string | undefined } | undefined;
    const req = request(
      { port, method: 'POST', path: '/private', headers: { 'content-type': 'application/json', 'content-length': 32 * 1024 * 1024 } },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => {
          response = { status: res.statusCode!, body, connection: res.headers.connection };
          // Node's client stops sending once a keep-alive answer is complete; the server's drain ends
          // when it goes. What matters is that the answer arrived whole, with no reset before it.
          setTimeout(() => {
            resolve({ ...response!, errors });
            req.destroy();
          }, 50);
        });
      },
    );
    req.on('error', (error) => errors.push(error.message));
    req.on('close', () => resolve({ ...(response ?? { status: 0, body: '', connection: undefined }), errors }));
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < 32) {
        sent++;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(result.errors, []);
  assert.is(result.status, 401);
  // No `Connection: close`: a proxy would pass it on and cut its client mid-upload (EPIPE, not the answer).
  assert.is.not(result.connection, 'close');
  assert.is(JSON.parse(result.body).reason, 'Unauthorized');
  assert.is(authenticated, 1);
});
order.after(() => {
  // A client that stopped sending after its answer holds a draining connection until the drain's idle
  // bound; the server itself need not wait for that here.
  server.closeAllConnections();
  server.close();
});
order.run();
