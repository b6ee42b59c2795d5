import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HubAuth, tokenFromHeaders } from '../../lib/auth/hub.ts';
import { Forbidden, Unauthorized, Unavailable } from '../../lib/http/errors.ts';

/** A stand-in for GET /hub/api/user, counting calls. The real Hub is exercised in test/integration. */
function fakeHub(users: Record<string, { name: string; scopes: string[] }>, delayMs = 0) {
  const calls: string[] = [];
  const fetch = (async (_url: string, init?: RequestInit) => {
    const token = String((init?.headers as Record<string, string>).authorization).replace(/^token /, '');
    calls.push(token);
    await new Promise((r) => setTimeout(r, delayMs));
    const user = users[token];
    return user ? new Response(JSON.stringify({ ...user, groups: [] }), { status: 200 }) : new Response('{"status":403}', { status: 403 });
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

const users = { good: { name: 'alice', scopes: ['access:services!service=kbatch'] }, noscope: { name: 'carol', scopes: ['self'] }, wide: { name: 'admin', scopes: ['access:services'] } };
const auth = suite('HubAuth');

auth('parses token and Bearer headers, nothing else', () => {
  assert.is(tokenFromHeaders({ authorization: 'token abc' }), 'abc');
  assert.is(tokenFromHeaders({ authorization: 'Bearer abc' }), 'abc');
  assert.is(tokenFromHeaders({ authorization: 'Basic abc' }), undefined);
  assert.is(tokenFromHeaders({ authorization: 'token' }), undefined);
  assert.is(tokenFromHeaders({}), undefined);
});
auth('resolves a token with the kbatch scope', async () => {
  const hub = fakeHub(users);
  const user = await new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: 60, fetch: hub.fetch }).authenticate({ authorization: 'token good' });
  assert.is(user.name, 'alice');
  assert.is(user.token, 'good');
});
auth('unfiltered access:services also passes', async () => {
  const hub = fakeHub(users);
  assert.is((await new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: 60, fetch: hub.fetch }).authenticate({ authorization: 'token wide' })).name, 'admin');
});
auth('missing and invalid tokens are 401, a missing scope is 403', async () => {
  const a = new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: 60, fetch: fakeHub(users).fetch });
  await a.authenticate({}).then(() => assert.unreachable(), (e) => assert.instance(e, Unauthorized));
  await a.authenticate({ authorization: 'token bad' }).then(() => assert.unreachable(), (e) => assert.instance(e, Unauthorized));
  await a.authenticate({ authorization: 'token noscope' }).then(() => assert.unreachable(), (e) => {
    assert.instance(e, Forbidden);
    assert.match((e as Error).message, /access:services!service=kbatch/);
  });
});
auth('caches positive and negative answers', async () => {
  const hub = fakeHub(users);
  let now = 0;
  const a = new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: 60, fetch: hub.fetch, now: () => now });
  await a.authenticate({ authorization: 'token good' });
  await a.authenticate({ authorization: 'token good' });
  await a.authenticate({ authorization: 'token bad' }).catch(() => undefined);
  await a.authenticate({ authorization: 'token bad' }).catch(() => undefined);
  assert.equal(hub.calls, ['good', 'bad']);
  now = 61_000;
  await a.authenticate({ authorization: 'token good' });
  assert.equal(hub.calls, ['good', 'bad', 'good']);
});
auth('coalesces concurrent lookups of one token', async () => {
  const hub = fakeHub(users, 50);
  const a = new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: 0, fetch: hub.fetch });
  await Promise.all(Array.from({ length: 10 }, () => a.authenticate({ authorization: 'token good' })));
  assert.is(hub.calls.length, 1);
});
auth('an unreachable Hub is a 503', async () => {
  const a = new HubAuth({ hubApiUrl: 'http://127.0.0.1:1', serviceName: 'kbatch', cacheSeconds: 60 });
  await a.authenticate({ authorization: 'token x' }).then(() => assert.unreachable(), (e) => {
    assert.instance(e, Unavailable);
    assert.is((e as Unavailable).status, 503);
    assert.is((e as Unavailable).reason, 'Unavailable');
  });
});
auth.run();
