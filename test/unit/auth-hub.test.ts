import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HubAuth, tokenFromHeaders } from '../../lib/auth/hub.ts';
import { LocalUserAuth } from '../../lib/auth/local.ts';
import { BadGateway, Forbidden, Unauthorized, Unavailable } from '../../lib/http/errors.ts';
import { namespaceForUser } from '../../lib/k8s/names.ts';

interface FakeToken {
  name: string;
  scopes: string[];
  tokenId?: string;
  /** What GET /users/{name}/tokens/{id} answers: an expiry, or a status. */
  expiresAt?: string | null;
  tokenStatus?: number;
}

/**
 * A stand-in for JupyterHub's `GET /user` and `GET /users/{name}/tokens/{id}` (shapes as in
 * JupyterHub 6.1), counting calls. The real Hub is exercised in test/integration.
 */
function fakeHub(tokens: Record<string, FakeToken>, delayMs = 0) {
  const calls: string[] = [];
  const fetch = (async (url: string, init?: RequestInit) => {
    const token = String((init?.headers as Record<string, string>).authorization).replace(/^token /, '');
    const path = new URL(url).pathname;
    calls.push(path === '/user' ? token : `${token} ${path}`);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const known = tokens[token];
    if (!known) return new Response('{"status":403}', { status: 403 });
    if (path === '/user') {
      return new Response(
        JSON.stringify({
          kind: 'user',
          name: known.name,
          groups: [],
          admin: false,
          scopes: known.scopes,
          token_id: known.tokenId ?? null,
          session_id: null,
        }),
        { status: 200 },
      );
    }
    if (path === `/users/${encodeURIComponent(known.name)}/tokens/${known.tokenId}`) {
      if (known.tokenStatus) return new Response('{}', { status: known.tokenStatus });
      return new Response(JSON.stringify({ user: known.name, id: known.tokenId, kind: 'api_token', expires_at: known.expiresAt ?? null }), {
        status: 200,
      });
    }
    return new Response('{"status":404}', { status: 404 });
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

const kbatch = 'access:services!service=kbatch';
const tokens: Record<string, FakeToken> = {
  good: { name: 'alice', scopes: [kbatch] },
  noscope: { name: 'carol', scopes: ['self'] },
  wide: { name: 'admin', scopes: ['access:services'] },
  unicode: { name: '田中太郎', scopes: [kbatch] },
};

function hubAuth(fetch: typeof globalThis.fetch, options: { cacheSeconds?: number; now?: () => number } = {}) {
  return new HubAuth({ hubApiUrl: 'http://hub', serviceName: 'kbatch', cacheSeconds: options.cacheSeconds ?? 30, fetch, now: options.now });
}
const as = (token: string) => ({ authorization: `token ${token}` });
const refused = (promise: Promise<unknown>, type: Function) =>
  promise.then(
    () => assert.unreachable(),
    (e) => assert.instance(e, type),
  );

const auth = suite('HubAuth resolves a token to a User');
auth('parses token and Bearer headers, nothing else', () => {
  assert.is(tokenFromHeaders({ authorization: 'token abc' }), 'abc');
  assert.is(tokenFromHeaders({ authorization: 'Bearer abc' }), 'abc');
  assert.is(tokenFromHeaders({ authorization: 'Basic abc' }), undefined);
  assert.is(tokenFromHeaders({ authorization: 'token' }), undefined);
  assert.is(tokenFromHeaders({}), undefined);
});
auth('a token with the kbatch scope yields the user with their namespace, computed once', async () => {
  const user = await hubAuth(fakeHub(tokens).fetch).authenticate(as('good'));
  assert.equal(user, { name: 'alice', namespace: 'kbatch-alice', groups: [], admin: false, scopes: [kbatch], token: 'good' });
  const unicode = await hubAuth(fakeHub(tokens).fetch).authenticate(as('unicode'));
  assert.is(unicode.namespace, namespaceForUser('田中太郎'));
});
auth('unfiltered access:services also passes', async () => {
  assert.is((await hubAuth(fakeHub(tokens).fetch).authenticate(as('wide'))).name, 'admin');
});
auth('missing and invalid tokens are 401, a missing scope is 403', async () => {
  const a = hubAuth(fakeHub(tokens).fetch);
  await refused(a.authenticate({}), Unauthorized);
  await refused(a.authenticate(as('bad')), Unauthorized);
  await a.authenticate(as('noscope')).then(
    () => assert.unreachable(),
    (e) => {
      assert.instance(e, Forbidden);
      assert.match((e as Error).message, /access:services!service=kbatch/);
    },
  );
});
auth("a name that is not well-formed Unicode is the Hub's fault (5xx), never a namespace", async () => {
  const a = hubAuth(fakeHub({ odd: { name: 'x\uD800', scopes: [kbatch] } }).fetch);
  await refused(a.authenticate(as('odd')), BadGateway);
});
auth('coalesces concurrent lookups of one token', async () => {
  const hub = fakeHub(tokens, 50);
  const a = hubAuth(hub.fetch, { cacheSeconds: 0 });
  await Promise.all(Array.from({ length: 10 }, () => a.authenticate(as('good'))));
  assert.is(hub.calls.length, 1);
});
auth('an unreachable Hub is a 503', async () => {
  const a = new HubAuth({ hubApiUrl: 'http://127.0.0.1:1', serviceName: 'kbatch', cacheSeconds: 60 });
  await a.authenticate(as('x')).then(
    () => assert.unreachable(),
    (e) => {
      assert.instance(e, Unavailable);
      assert.is((e as Unavailable).status, 503);
      assert.is((e as Unavailable).reason, 'Unavailable');
    },
  );
});
auth('the local user has a namespace too', async () => {
  assert.is((await new LocalUserAuth('Zoë').authenticate()).namespace, namespaceForUser('Zoë'));
});
auth.run();

const cache = suite('HubAuth cache: revocation is seen within the cache time');
cache('a success is trusted for cacheSeconds, then the Hub is asked again', async () => {
  const hub = fakeHub(tokens);
  let now = 0;
  const a = hubAuth(hub.fetch, { cacheSeconds: 30, now: () => now });
  await a.authenticate(as('good'));
  now = 29_999;
  await a.authenticate(as('good'));
  assert.equal(hub.calls, ['good']);
  now = 30_000;
  await a.authenticate(as('good'));
  assert.equal(hub.calls, ['good', 'good']);
});
cache('a refusal is remembered much shorter than a success, and never longer', async () => {
  const hub = fakeHub(tokens);
  let now = 0;
  const a = hubAuth(hub.fetch, { cacheSeconds: 30, now: () => now });
  await refused(a.authenticate(as('bad')), Unauthorized);
  await refused(a.authenticate(as('bad')), Unauthorized);
  assert.equal(hub.calls, ['bad']);
  now = 5_000;
  await refused(a.authenticate(as('bad')), Unauthorized);
  assert.equal(hub.calls, ['bad', 'bad']);

  const short = fakeHub(tokens);
  now = 0;
  const b = hubAuth(short.fetch, { cacheSeconds: 2, now: () => now });
  await refused(b.authenticate(as('bad')), Unauthorized);
  now = 2_000;
  await refused(b.authenticate(as('bad')), Unauthorized);
  assert.equal(short.calls, ['bad', 'bad']);
});
cache('a revoked token is refused once its cache entry lapses', async () => {
  const live = { ...tokens };
  const hub = fakeHub(live);
  let now = 0;
  const a = hubAuth(hub.fetch, { cacheSeconds: 10, now: () => now });
  await a.authenticate(as('good'));
  delete live.good;
  now = 10_000;
  await refused(a.authenticate(as('good')), Unauthorized);
});
cache('a token is cached no longer than it lives, when the Hub says when it expires', async () => {
  const expiring = {
    e: { name: 'alice', scopes: [kbatch, 'read:tokens!user=alice'], tokenId: 'a7', expiresAt: '1970-01-01T00:00:02.500000Z' },
  };
  const hub = fakeHub(expiring);
  let now = 0;
  const a = hubAuth(hub.fetch, { cacheSeconds: 30, now: () => now });
  await a.authenticate(as('e'));
  assert.equal(hub.calls, ['e', 'e /users/alice/tokens/a7']);
  now = 2_499;
  await a.authenticate(as('e'));
  assert.is(hub.calls.length, 2);
  now = 2_500;
  delete (expiring as Record<string, unknown>).e; // the Hub refuses it from now on
  await refused(a.authenticate(as('e')), Unauthorized);
});
cache('a token the Hub answers for just before it expires is refused, not cached', async () => {
  const hub = fakeHub({
    e: { name: 'alice', scopes: [kbatch, 'read:tokens!user=alice'], tokenId: 'a7', expiresAt: '1970-01-01T00:00:01Z' },
  });
  const a = hubAuth(hub.fetch, { now: () => 1_000 });
  await refused(a.authenticate(as('e')), Unauthorized);
});
cache('a token revoked between the two Hub calls is refused', async () => {
  const hub = fakeHub({ r: { name: 'alice', scopes: [kbatch, 'read:tokens'], tokenId: 'a9', tokenStatus: 404 } });
  await refused(hubAuth(hub.fetch).authenticate(as('r')), Unauthorized);
});
cache('a token that cannot read itself, or never expires, costs one Hub call and lives cacheSeconds', async () => {
  const hub = fakeHub({
    narrow: { name: 'alice', scopes: [kbatch], tokenId: 'a1', expiresAt: '1970-01-01T00:00:01Z' },
    forever: { name: 'bob', scopes: [kbatch, 'read:tokens!user=bob'], tokenId: 'a2', expiresAt: null },
  });
  let now = 0;
  const a = hubAuth(hub.fetch, { cacheSeconds: 30, now: () => now });
  await a.authenticate(as('narrow'));
  await a.authenticate(as('forever'));
  now = 29_000;
  await a.authenticate(as('narrow'));
  await a.authenticate(as('forever'));
  assert.equal(hub.calls, ['narrow', 'forever', 'forever /users/bob/tokens/a2']);
});
cache('expired entries are swept by time, not only when the cache is full', async () => {
  const many: Record<string, FakeToken> = {};
  for (let i = 0; i < 50; i++) many[`t${i}`] = { name: `u${i}`, scopes: [kbatch] };
  let now = 0;
  const a = hubAuth(fakeHub(many).fetch, { cacheSeconds: 10, now: () => now });
  for (let i = 0; i < 50; i++) await a.authenticate(as(`t${i}`));
  assert.is(a.cacheSize, 50);
  now = 10_000;
  await a.authenticate(as('t0'));
  assert.is(a.cacheSize, 1);
});
cache('random tokens cannot grow the cache without bound', async () => {
  const a = hubAuth(fakeHub({}).fetch, { cacheSeconds: 30, now: () => 0 });
  for (let i = 0; i < 10_050; i++) await a.authenticate(as(`junk${i}`)).catch(() => undefined);
  assert.ok(a.cacheSize <= 10_000, String(a.cacheSize));
});
cache.run();
