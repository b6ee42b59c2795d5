import { createServer } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest } from '../../lib/http/errors.ts';
import { createRouter } from '../../lib/http/router.ts';

const handler = createRouter('/services/kbatch/', [
  { method: 'GET', path: '/jobs/:name', handler: async (ctx) => ({ json: { name: ctx.params.name } }) },
  { method: 'GET', path: '/fail', handler: async () => { throw new BadRequest('name: nope', 'name'); } },
  { method: 'GET', path: '/crash', handler: async () => { throw new Error('secret internals'); } },
]);
const server = createServer((req, res) => void handler(req, res));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
const get = async (path: string, method = 'GET') => {
  const res = await fetch(base + path, { method });
  return { status: res.status, body: await res.json() };
};

const router = suite('router');
router('matches under the Hub prefix and without it, slash or not', async () => {
  assert.equal((await get('/services/kbatch/jobs/a%2Db')).body, { name: 'a-b' });
  assert.equal((await get('/jobs/x/')).body, { name: 'x' });
});
router('unknown paths are 404 NoRoute and wrong methods 405 MethodNotAllowed, as JSON', async () => {
  const missing = await get('/services/kbatch/nope');
  assert.is(missing.status, 404);
  assert.is(missing.body.reason, 'NoRoute');
  const wrong = await get('/jobs/x', 'DELETE');
  assert.is(wrong.status, 405);
  assert.is(wrong.body.reason, 'MethodNotAllowed');
});
router('typed errors map to their status with detail and field', async () => {
  assert.equal(await get('/fail'), { status: 400, body: { detail: 'name: nope', status: 400, reason: 'BadRequest', field: 'name' } });
});
router('unexpected errors are a 500 that leaks nothing', async () => {
  const original = console.error;
  console.error = () => undefined;
  try {
    assert.equal(await get('/crash'), { status: 500, body: { detail: 'Internal server error', status: 500, reason: 'Internal' } });
  } finally {
    console.error = original;
  }
});
router.after(() => {
  server.close();
});
router.run();
