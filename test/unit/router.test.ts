import { createServer, request } from 'node:http';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { streamAbortMarker } from '../../lib/contract.ts';
import { BadRequest } from '../../lib/http/errors.ts';
import { installLastResort } from '../../lib/http/lifecycle.ts';
import { createRouter } from '../../lib/http/router.ts';

const logged: string[] = [];
// The last resort as the server installs it, logging here instead of stderr.
installLastResort((line) => logged.push(line));

const handler = createRouter('/services/kbatch/', [
  { method: 'GET', path: '/jobs/:name', handler: async (ctx) => ({ json: { name: ctx.params.name } }) },
  {
    method: 'GET',
    path: '/fail',
    handler: async () => {
      throw new BadRequest('name: nope', 'name');
    },
  },
  {
    method: 'GET',
    path: '/crash',
    handler: async () => {
      throw new Error('secret internals at /app/lib/x.ts');
    },
  },
  // Not async: a synchronous throw must be caught like a rejection.
  {
    method: 'GET',
    path: '/sync',
    handler: (() => {
      throw new TypeError('boom');
    }) as never,
  },
  {
    method: 'GET',
    path: '/stream-fails',
    handler: async () => {
      const stream = new Readable({ read() {} });
      stream.push('line 1\n');
      setTimeout(() => stream.destroy(new Error('kubelet went away')), 20);
      return { stream };
    },
  },
  {
    method: 'GET',
    path: '/stray',
    // A callback the handler started throws where nobody awaits it: the request still gets its answer.
    handler: () =>
      new Promise(() =>
        setTimeout(() => {
          throw new Error('stray');
        }, 5),
      ),
  },
]);
const server = createServer((req, res) => void handler(req, res));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as { port: number }).port;
const base = `http://127.0.0.1:${port}`;
// node:http, not fetch: fetch would normalise the odd paths (dot segments) these tests send on purpose.
const get = (path: string, method = 'GET') =>
  new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });

const router = suite('router');
router('matches under the Hub prefix and without it, slash or not', async () => {
  assert.equal((await get('/services/kbatch/jobs/a%2Db')).body, { name: 'a-b' });
  assert.equal((await get('/services/kbatch/jobs/job-1.x')).body, { name: 'job-1.x' });
  assert.equal((await get('/jobs/x/')).body, { name: 'x' });
  assert.equal((await get('/jobs/x?a=%zz')).body, { name: 'x' });
});
router('unknown paths are 404 NoRoute and wrong methods 405 MethodNotAllowed, as JSON', async () => {
  const missing = await get('/services/kbatch/nope');
  assert.is(missing.status, 404);
  assert.is(missing.body.reason, 'NoRoute');
  const wrong = await get('/jobs/x', 'DELETE');
  assert.is(wrong.status, 405);
  assert.is(wrong.body.reason, 'MethodNotAllowed');
});
router('bad percent-encoding in a path, and names that would climb out of an API URL, are a 400, not a crash', async () => {
  for (const path of ['/jobs/%E0%A4%A', '/jobs/%', '/jobs/%zz', '/services/kbatch/jobs/%C0%AF', '/jobs/%2E%2E', '/jobs/%2e']) {
    const res = await get(path);
    assert.is(res.status, 400, path);
    assert.is(res.body.reason, 'BadRequest');
  }
});
router('a name that is not a Kubernetes name is refused before any handler runs', async () => {
  for (const path of [
    '/jobs/a%2Fb',
    '/jobs/%2F',
    '/jobs/UPPER',
    '/jobs/a%20b',
    '/jobs/-x',
    `/jobs/${'a'.repeat(254)}`,
    '/jobs/%F0%9F%98%80',
    '/jobs/a%00b',
  ]) {
    const res = await get(path);
    assert.is(res.status, 400, path);
    assert.is(res.body.field, 'name', path);
  }
  assert.is((await get('/jobs/UPPER/elsewhere')).status, 404, 'a path that does not match is judged as unknown, not as a bad name');
  assert.equal((await get(`/jobs/${'a'.repeat(253)}`)).body, { name: 'a'.repeat(253) });
});
router('typed errors map to their status with detail, reason and field', async () => {
  assert.equal(await get('/fail'), { status: 400, body: { detail: 'name: nope', status: 400, reason: 'BadRequest', field: 'name' } });
});
router('unexpected errors, thrown or rejected, are a 500 that leaks nothing and is logged on one line', async () => {
  const before = logged.length;
  for (const path of ['/crash', '/sync'])
    assert.equal(await get(path), { status: 500, body: { detail: 'Internal server error', status: 500, reason: 'Internal' } });
  // The request log's JSON lines go to the same logger; the error lines are the others.
  const lines = logged.slice(before).filter((line) => !line.startsWith('{'));
  assert.is(lines.length, 2);
  assert.match(lines[0]!, /^kbatch: 500 Internal on GET \/crash: Error: secret internals/);
  assert.ok(lines.every((line) => !line.includes('\n')));
});
router('a stream failing after its 200 ends with the abort marker and a cut connection', async () => {
  const res = await fetch(`${base}/stream-fails`);
  assert.is(res.status, 200);
  let text = '';
  const decoder = new TextDecoder();
  const error = await (async () => {
    for await (const chunk of res.body!) text += decoder.decode(chunk);
  })().then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(error, 'the client saw an incomplete response');
  assert.is(text, `line 1\n\n${streamAbortMarker}Internal server error\n`);
});
router('an exception nobody awaited is answered on its own request by the last resort', async () => {
  const before = logged.length;
  assert.equal(await get('/stray'), { status: 500, body: { detail: 'Internal server error', status: 500, reason: 'Internal' } });
  const line = logged.slice(before).find((l) => l.includes('last resort'));
  assert.ok(line, logged.join('\n'));
  assert.match(line!, /during GET \/stray: Error: stray/);
  assert.is((await get('/jobs/alive')).status, 200);
});
router.after(() => {
  server.close();
});
router.run();
