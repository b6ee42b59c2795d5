// A real JupyterHub + CHP in front of a stand-in for the kbatch service: checks routing through the proxy and the
// token facts kbatch's auth relies on (GET {hub api}/user, scopes, 403s).
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KBATCH_SCOPE, startHub, type Hub } from '../stack/hub.ts';

// Stand-in for the kbatch server (to be replaced by the real one): records what the proxy delivers and answers
// with the hub's verdict on the forwarded Authorization header.
interface StandInService {
  url: string;
  requests: { url: string; headers: IncomingHttpHeaders }[];
  useHubApi(apiUrl: string): void;
  close(): Promise<void>;
}

async function startStandInService(): Promise<StandInService> {
  let hubApi: string | undefined;
  const requests: StandInService['requests'] = [];
  const server = createServer(async (req, res) => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    // No header (e.g. the hub's own startup probe) ⇒ answer without asking the hub, as kbatch would.
    if (!req.headers.authorization || !hubApi) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"detail":"no token"}');
      return;
    }
    try {
      const hub = await fetch(`${hubApi}/user`, { headers: { Authorization: req.headers.authorization } });
      res.writeHead(hub.status, { 'Content-Type': 'application/json' }).end(await hub.text());
    } catch (err) {
      res.writeHead(502, { 'Content-Type': 'application/json' }).end(JSON.stringify({ detail: String(err) }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    useHubApi: (apiUrl) => (hubApi = apiUrl),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface Context {
  service: StandInService;
  hub: Hub;
  startError?: unknown;
}

const HubAuth = suite<Context>('JupyterHub in front of the kbatch service');

HubAuth.before(async (ctx) => {
  // uvu 0.5 swallows an error thrown by a `before` hook (its `finally` returns) and exits 0; report it per test.
  try {
    ctx.service = await startStandInService();
    ctx.hub = await startHub({ serviceUrl: ctx.service.url });
    ctx.service.useHubApi(ctx.hub.apiUrl);
  } catch (err) {
    ctx.startError = err;
  }
});

HubAuth.before.each((ctx) => {
  const err = ctx.startError;
  if (!err) return;
  ctx.startError = new Error('the hub did not start; see the first failure');
  throw err;
});

HubAuth.after(async (ctx) => {
  await ctx.hub?.stop();
  await ctx.service?.close();
});

const callService = (hub: Hub, token: string, path = 'authorized') =>
  fetch(`${hub.url}/services/kbatch/${path}`, { headers: { Authorization: `token ${token}` } });

HubAuth('the proxy forwards the full path, query and Authorization header to the service', async ({ hub, service }) => {
  const res = await callService(hub, hub.tokens.alice, 'authorized?stream=true');
  assert.is(res.status, 200);
  const seen = service.requests.at(-1);
  assert.ok(seen);
  assert.is(seen.url, '/services/kbatch/authorized?stream=true'); // CHP keeps the prefix (includePrefix)
  assert.is(seen.headers.authorization, `token ${hub.tokens.alice}`);
  assert.is(seen.headers.host, new URL(hub.url).host); // Host is the public one, not the service's
  assert.is(seen.headers['x-forwarded-host'], new URL(hub.url).host);
});

HubAuth('a kbatch user token resolves to its owner and carries the kbatch access scope', async ({ hub }) => {
  for (const name of ['alice', 'bob'] as const) {
    const res = await callService(hub, hub.tokens[name]);
    assert.is(res.status, 200);
    const user = (await res.json()) as { kind: string; name: string; scopes: string[] };
    assert.is(user.kind, 'user');
    assert.is(user.name, name);
    assert.ok(user.scopes.includes(KBATCH_SCOPE), `${name}: ${user.scopes.join(' ')}`);
  }
});

HubAuth('a valid token of a user without the kbatch role lacks the access scope', async ({ hub }) => {
  const res = await callService(hub, hub.tokens.carol);
  assert.is(res.status, 200);
  const user = (await res.json()) as { name: string; scopes: string[] };
  assert.is(user.name, 'carol');
  assert.not.ok(
    user.scopes.some((scope) => scope.startsWith('access:services')),
    user.scopes.join(' '),
  );
});

HubAuth('a token restricted to the kbatch scope keeps it (plus identify scopes)', async ({ hub }) => {
  const token = await hub.createToken('bob', { scopes: [KBATCH_SCOPE] });
  const user = (await (await callService(hub, token)).json()) as { scopes: string[] };
  assert.ok(user.scopes.includes(KBATCH_SCOPE));
  assert.not.ok(user.scopes.includes('tokens!user=bob'));
});

HubAuth('an unknown token is refused by the hub API with 403', async ({ hub }) => {
  const res = await callService(hub, '0123456789abcdef0123456789abcdef');
  assert.is(res.status, 403);
  // JupyterHub 6.1 answers {"status": 403, "message": null}; 3.0 said "Forbidden". Only the status is stable.
  assert.is(((await res.json()) as { status: number }).status, 403);
});

HubAuth('an expired token is refused with 403', async ({ hub }) => {
  const token = await hub.createToken('alice', { expiresIn: 1 });
  assert.is((await callService(hub, token)).status, 200);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.is((await callService(hub, token)).status, 403);
});

HubAuth.run();
