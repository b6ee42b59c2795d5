/**
 * The web page's pieces without a browser: the sealed cookies, the cookie standing in for a token
 * (and only with the anti-CSRF header), the OAuth login and callback against a fake Hub token
 * endpoint, the settings, and the page script's own syntax.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Deps } from '../../lib/api/deps.ts';
import type { Authenticator, User } from '../../lib/auth/types.ts';
import { resolveUser } from '../../lib/auth/user.ts';
import { ConfigError, loadSettings } from '../../lib/config.ts';
import { Unauthorized } from '../../lib/http/errors.ts';
import { createRouter } from '../../lib/http/router.ts';
import { SessionAuthenticator } from '../../lib/web/auth.ts';
import { escapeHtml } from '../../lib/web/html.ts';
import { webRoutes } from '../../lib/web/routes.ts';
import { appScript } from '../../lib/web/script.ts';
import { openSession, openState, readCookies, sealSession, sealState, serializeCookie } from '../../lib/web/session.ts';

const key = new Uint8Array(32).fill(7);
const otherKey = new Uint8Array(32).fill(8);

/** Knows one token, like the Hub would; records what it was asked. */
class FakeHub implements Authenticator {
  seen: IncomingHttpHeaders[] = [];
  async authenticate(headers: IncomingHttpHeaders): Promise<User> {
    this.seen.push(headers);
    if (headers.authorization !== 'token good-token') throw new Unauthorized();
    return resolveUser({ name: 'alice', groups: [], admin: false, scopes: ['access:services!service=kbatch'], token: 'good-token' });
  }
}

// ---------------------------------------------------------------------------------------------
const sealed = suite('sealed cookies');
sealed('a session opens with its key and keeps token and anti-CSRF value', async () => {
  const value = await sealSession({ token: 't0k3n', csrf: 'c5rf' }, key, 60);
  assert.not.ok(value.includes('t0k3n'));
  assert.equal(await openSession(value, key), { token: 't0k3n', csrf: 'c5rf' });
});
sealed('another key, a changed byte, or nothing at all open to no session', async () => {
  const value = await sealSession({ token: 't', csrf: 'c' }, key, 60);
  assert.is(await openSession(value, otherKey), undefined);
  const parts = value.split('.');
  parts[3] = parts[3]!.slice(0, -2) + (parts[3]!.endsWith('AA') ? 'BB' : 'AA');
  assert.is(await openSession(parts.join('.'), key), undefined);
  assert.is(await openSession(undefined, key), undefined);
  assert.is(await openSession('not a jwe', key), undefined);
});
sealed('a login state cannot be replayed as a session, nor a session as a state', async () => {
  const state = await sealState({ nonce: 'n', verifier: 'v', next: '/services/kbatch/' }, key);
  assert.is(await openSession(state, key), undefined);
  const session = await sealSession({ token: 't', csrf: 'c' }, key, 60);
  assert.is(await openState(session, key), undefined);
  assert.equal(await openState(state, key), { nonce: 'n', verifier: 'v', next: '/services/kbatch/' });
});
sealed('an expired session opens to nothing', async () => {
  const value = await sealSession({ token: 't', csrf: 'c' }, key, 60);
  assert.ok(await openSession(value, key, new Date(Date.now() + 59_000)));
  assert.is(await openSession(value, key, new Date(Date.now() + 61_000)), undefined);
});
sealed('cookies are HttpOnly, SameSite=Lax, path-scoped, and Secure only over https', () => {
  assert.is(
    serializeCookie('a', 'b', { path: '/services/kbatch/', secure: false, maxAge: 10 }),
    'a=b; Path=/services/kbatch/; Max-Age=10; HttpOnly; SameSite=Lax',
  );
  assert.match(serializeCookie('a', 'b', { path: '/', secure: true, maxAge: 0 }), /; Secure$/);
});
sealed('the first cookie of a name wins', () => {
  assert.is(readCookies({ cookie: 'x=1; kbatch-session=first; kbatch-session=second' }).get('kbatch-session'), 'first');
});
sealed.run();

// ---------------------------------------------------------------------------------------------
const cookieAuth = suite('the session cookie on the API');
cookieAuth('a request with an Authorization header goes to the Hub check untouched', async () => {
  const hub = new FakeHub();
  const auth = new SessionAuthenticator(hub, key);
  const user = await auth.authenticate({ authorization: 'token good-token', cookie: 'kbatch-session=garbage' });
  assert.is(user.name, 'alice');
  assert.is(hub.seen[0]!.cookie, 'kbatch-session=garbage');
});
cookieAuth('the cookie with its anti-CSRF header resolves through the same Hub check, without the cookie', async () => {
  const hub = new FakeHub();
  const auth = new SessionAuthenticator(hub, key);
  const cookie = `kbatch-session=${await sealSession({ token: 'good-token', csrf: 'right' }, key, 60)}`;
  const user = await auth.authenticate({ cookie, 'x-kbatch-csrf': 'right' });
  assert.is(user.name, 'alice');
  assert.is(hub.seen[0]!.authorization, 'token good-token');
  assert.is(hub.seen[0]!.cookie, undefined);
});
cookieAuth('the cookie without, or with a wrong, anti-CSRF header is 403 and never reaches the Hub', async () => {
  const hub = new FakeHub();
  const auth = new SessionAuthenticator(hub, key);
  const cookie = `kbatch-session=${await sealSession({ token: 'good-token', csrf: 'right' }, key, 60)}`;
  for (const headers of [{ cookie }, { cookie, 'x-kbatch-csrf': 'wrong' }, { cookie, 'x-kbatch-csrf': 'righ' }]) {
    await auth.authenticate(headers).then(
      () => assert.unreachable('accepted'),
      (error) => assert.is(error.status, 403),
    );
  }
  assert.is(hub.seen.length, 0);
});
cookieAuth('an unreadable cookie is 401; no cookie at all is whatever the Hub check says', async () => {
  const auth = new SessionAuthenticator(new FakeHub(), key);
  const foreign = `kbatch-session=${await sealSession({ token: 'good-token', csrf: 'c' }, otherKey, 60)}`;
  await auth.authenticate({ cookie: foreign, 'x-kbatch-csrf': 'c' }).then(
    () => assert.unreachable(),
    (error) => assert.is(error.status, 401),
  );
  await auth.authenticate({}).then(
    () => assert.unreachable(),
    (error) => assert.is(error.status, 401),
  );
});
cookieAuth.run();

// ---------------------------------------------------------------------------------------------
const oauth = suite('the OAuth login against a fake Hub token endpoint');
let tokenEndpoint: Server;
let tokenRequests: URLSearchParams[] = [];
let handle: ReturnType<typeof createRouter>;
let router: Server;
let base = '';

oauth.before(async () => {
  tokenEndpoint = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      tokenRequests.push(form);
      const ok = form.get('code') === 'good-code' && form.get('client_secret') === 'a-client-secret-of-32-characters!!';
      res.writeHead(ok ? 200 : 400, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? { access_token: 'good-token', token_type: 'Bearer', expires_in: 3600 } : { error: 'invalid_grant' }));
    });
  });
  await new Promise<void>((resolve) => tokenEndpoint.listen(0, '127.0.0.1', resolve));
  const hubApi = `http://127.0.0.1:${(tokenEndpoint.address() as { port: number }).port}/hub/api`;
  const settings = loadSettings({
    JUPYTERHUB_API_URL: hubApi,
    KBATCH_OAUTH_CLIENT_SECRET: 'a-client-secret-of-32-characters!!',
    KBATCH_BACKEND: 'local',
    KBATCH_LOCAL_DIR: '/nonexistent',
  });
  const deps = {
    settings,
    auth: new SessionAuthenticator(new FakeHub(), settings.web!.cookieKey),
    backend: { namespaceOwner: async () => null } as unknown as Deps['backend'],
    admin: {} as Deps['admin'],
  } as Deps;
  handle = createRouter(settings.prefix, webRoutes(deps));
  router = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => router.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(router.address() as { port: number }).port}/services/kbatch/`;
});
oauth.after(async () => {
  await new Promise((resolve) => router.close(resolve));
  await new Promise((resolve) => tokenEndpoint.close(resolve));
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(new URL(path, base), { headers, redirect: 'manual' });
const stateCookieOf = (response: Response) =>
  response.headers
    .getSetCookie()
    .find((c) => c.startsWith('kbatch-oauth-state='))!
    .split(';')[0]!;

oauth('login sends the browser to the Hub with state, PKCE and the registered redirect URI', async () => {
  const response = await get('login?next=/services/kbatch/job/x');
  assert.is(response.status, 302);
  const location = new URL(response.headers.get('location')!, 'http://hub');
  assert.is(location.pathname, '/hub/api/oauth2/authorize');
  assert.is(location.searchParams.get('client_id'), 'service-kbatch');
  assert.is(location.searchParams.get('redirect_uri'), '/services/kbatch/oauth_callback');
  assert.is(location.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(location.searchParams.get('state')!.length >= 40);
  assert.match(
    response.headers.getSetCookie()[0]!,
    /^kbatch-oauth-state=.+; Path=\/services\/kbatch\/; Max-Age=600; HttpOnly; SameSite=Lax$/,
  );
});
oauth('a callback with the matching state and cookie trades the code with the secret and PKCE verifier, then returns to next', async () => {
  tokenRequests = [];
  const login = await get('login?next=/services/kbatch/job/x');
  const state = new URL(login.headers.get('location')!, 'http://hub').searchParams.get('state')!;
  const challenge = new URL(login.headers.get('location')!, 'http://hub').searchParams.get('code_challenge')!;
  const response = await get(`oauth_callback?code=good-code&state=${state}`, { cookie: stateCookieOf(login) });
  assert.is(response.status, 302);
  assert.is(response.headers.get('location'), '/services/kbatch/job/x');
  const form = tokenRequests[0]!;
  assert.is(form.get('grant_type'), 'authorization_code');
  assert.is(form.get('redirect_uri'), '/services/kbatch/oauth_callback');
  const { createHash } = await import('node:crypto');
  assert.is(createHash('sha256').update(form.get('code_verifier')!).digest('base64url'), challenge);
  const cookies = response.headers.getSetCookie();
  assert.ok(
    cookies.some((c) => /^kbatch-session=[^;]+; Path=\/services\/kbatch\/; Max-Age=3600; HttpOnly; SameSite=Lax$/.test(c)),
    cookies.join('\n'),
  );
  assert.ok(cookies.some((c) => c.startsWith('kbatch-oauth-state=; ') && c.includes('Max-Age=0')));
});
oauth('a callback without the state cookie, or with another state, is refused before any code is traded', async () => {
  tokenRequests = [];
  const login = await get('login');
  assert.is((await get('oauth_callback?code=good-code&state=anything')).status, 400);
  assert.is((await get('oauth_callback?code=good-code&state=wrong', { cookie: stateCookieOf(login) })).status, 400);
  assert.is(tokenRequests.length, 0);
});
oauth('a code the Hub refuses is a refusal page, not a session', async () => {
  const login = await get('login');
  const state = new URL(login.headers.get('location')!, 'http://hub').searchParams.get('state')!;
  const response = await get(`oauth_callback?code=bad-code&state=${state}`, { cookie: stateCookieOf(login) });
  assert.is(response.status, 403);
  assert.not.ok(response.headers.getSetCookie().some((c) => c.startsWith('kbatch-session=') && !c.includes('Max-Age=0')));
});
oauth('next never leads off the service: other paths and other hosts become the service root', async () => {
  for (const next of [
    'https://evil.example/',
    '//evil.example/services/kbatch/',
    '/hub/admin',
    '/services/kbatch/\\evil',
    '/services/kbatch/../../hub/admin',
    '/services/kbatch/%2E%2e/x',
  ]) {
    const login = await get(`login?next=${encodeURIComponent(next)}`);
    const state = await openState(
      stateCookieOf(login).split('=')[1],
      loadSettings({ JUPYTERHUB_API_URL: 'http://x', KBATCH_OAUTH_CLIENT_SECRET: 'a-client-secret-of-32-characters!!' }).web!.cookieKey,
    );
    assert.is(state!.next, '/services/kbatch/', next);
  }
});
oauth('a page without a session redirects to login and remembers where it was', async () => {
  const response = await get('job/some-job', { accept: 'text/html' });
  assert.is(response.status, 302);
  assert.is(response.headers.get('location'), `/services/kbatch/login?next=${encodeURIComponent('/services/kbatch/job/some-job')}`);
});
oauth('the root stays JSON for API clients and probes', async () => {
  const response = await get('');
  assert.equal(await response.json(), { message: 'kbatch' });
});
oauth.run();

// ---------------------------------------------------------------------------------------------
const settingsSuite = suite('web settings');
settingsSuite('no client secret: no web login', () => {
  assert.is(loadSettings({ JUPYTERHUB_API_URL: 'http://hub/hub/api' }).web, undefined);
});
settingsSuite("defaults follow JupyterHub's own for a service", () => {
  const web = loadSettings({
    JUPYTERHUB_API_URL: 'http://hub:8081/hub/api/',
    KBATCH_OAUTH_CLIENT_SECRET: 'x'.repeat(32),
    JUPYTERHUB_SERVICE_NAME: 'batch',
    KBATCH_PREFIX: '/services/batch/',
  }).web!;
  assert.is(web.clientId, 'service-batch');
  assert.is(web.redirectUri, '/services/batch/oauth_callback');
  assert.is(web.authorizeUrl, '/hub/api/oauth2/authorize');
  assert.is(web.tokenUrl, 'http://hub:8081/hub/api/oauth2/token');
  assert.is(web.cookieKey.length, 32);
});
settingsSuite('short secrets are refused; a long cookie secret makes a short client secret usable', () => {
  const env = { JUPYTERHUB_API_URL: 'http://hub/hub/api' };
  assert.throws(
    () => loadSettings({ ...env, KBATCH_OAUTH_CLIENT_SECRET: 'short' }),
    (e: unknown) => e instanceof ConfigError && /KBATCH_COOKIE_SECRET/.test((e as Error).message),
  );
  assert.throws(
    () => loadSettings({ ...env, KBATCH_OAUTH_CLIENT_SECRET: 'x'.repeat(40), KBATCH_COOKIE_SECRET: 'short' }),
    (e: unknown) => e instanceof ConfigError,
  );
  const a = loadSettings({ ...env, KBATCH_OAUTH_CLIENT_SECRET: 'short', KBATCH_COOKIE_SECRET: 'y'.repeat(32) }).web!;
  const b = loadSettings({ ...env, KBATCH_OAUTH_CLIENT_SECRET: 'other', KBATCH_COOKIE_SECRET: 'y'.repeat(32) }).web!;
  assert.equal(a.cookieKey, b.cookieKey, 'every function derives the same key from the same secret');
});
settingsSuite.run();

// ---------------------------------------------------------------------------------------------
const assets = suite("the page's own text");
assets('the script parses, and never writes HTML from data', () => {
  assert.not.throws(() => new Function(appScript));
  assert.not.match(appScript, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
});
assets('escapeHtml neutralises every character that could open a tag or close an attribute', () => {
  assert.is(escapeHtml(`<img src=x onerror="a('b')">&\``), '&#60;img src=x onerror=&#34;a(&#39;b&#39;)&#34;&#62;&#38;&#96;');
});
assets.run();
