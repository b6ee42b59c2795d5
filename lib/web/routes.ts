import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Deps } from '../api/deps.ts';
import { checkOwnNamespace } from '../api/namespace.ts';
import type { User } from '../auth/types.ts';
import type { WebSettings } from '../config.ts';
import { BadGateway, Forbidden, HttpError, toHttpError, Unauthorized, Unavailable } from '../http/errors.ts';
import type { Reply, RequestContext, RouteDefinition } from '../http/router.ts';
import { assetVersions, messagePage, redirect, shellPage, wantsHtml, type View } from './html.ts';
import { appScript } from './script.ts';
import { appStyles } from './styles.ts';
import {
  isHttps,
  openSession,
  openState,
  randomToken,
  readCookies,
  sameSecret,
  sealSession,
  sealState,
  serializeCookie,
  sessionCookie,
  stateCookie,
  stateMaxAgeSeconds,
  type Session,
} from './session.ts';

/**
 * The web page: its views, its two static assets, and the Hub OAuth login that puts the Hub token
 * into the sealed session cookie (lib/web/session.ts). The API routes accept that cookie through
 * SessionAuthenticator (lib/web/auth.ts).
 */
export function webRoutes(deps: Deps): RouteDefinition[] {
  const { settings } = deps;
  const prefix = settings.prefix;
  const web = settings.web;

  const cookie = (ctx: RequestContext, name: string, value: string, maxAge: number) =>
    serializeCookie(name, value, {
      path: prefix,
      secure: isHttps(ctx.req.headers, Boolean((ctx.req.socket as TLSSocket).encrypted)),
      maxAge,
    });

  /** Where a login started from this request should come back to: only ever a path under our prefix. */
  const safeNext = (raw: string | null): string => {
    // Dot segments would climb out of the prefix once the browser resolves them.
    if (
      !raw ||
      !raw.startsWith(prefix) ||
      raw.includes('\\') ||
      /^\/\//.test(raw) ||
      /[\r\n]/.test(raw) ||
      /\/(\.|%2e){1,2}(\/|$|\?)/i.test(raw)
    )
      return prefix;
    return raw;
  };

  const loginUrl = (ctx: RequestContext) => {
    const here = new URL(ctx.req.originalUrl ?? ctx.req.url ?? prefix, 'http://localhost');
    return `${prefix}login?next=${encodeURIComponent(safeNext(here.pathname + here.search))}`;
  };

  /**
   * The caller of a page request, or the reply that stands in for the page: a redirect to log in, or
   * a refusal. Without login (KBATCH_AUTH=none) the configured Authenticator decides alone.
   */
  async function pageUser(ctx: RequestContext): Promise<{ user: User; session?: Session } | Reply> {
    if (settings.auth === 'none') return { user: await deps.auth.authenticate(ctx.req.headers) };
    if (!web) {
      return messagePage(
        prefix,
        404,
        'The kbatch web page is not enabled',
        'This kbatch server has no Hub OAuth client configured. A Hub admin enables the page by registering kbatch as an OAuth client and setting KBATCH_OAUTH_CLIENT_SECRET (see the kbatch README, "Web page"). The API and the command line work as before.',
      );
    }
    const session = await openSession(readCookies(ctx.req.headers).get(sessionCookie), web.cookieKey);
    if (!session) return redirect(loginUrl(ctx));
    try {
      const user = await deps.auth.authenticate({ authorization: `token ${session.token}` });
      await checkOwnNamespace(deps, user);
      return { user, session };
    } catch (error) {
      // The Hub no longer knows the token (revoked, expired, Hub reset): start over.
      if (error instanceof Unauthorized) return redirect(loginUrl(ctx), { 'set-cookie': cookie(ctx, sessionCookie, '', 0) });
      const refusal = toHttpError(error);
      if (refusal.status === 403) return messagePage(prefix, 403, 'Not allowed', refusal.message);
      throw error;
    }
  }

  const page =
    (view: View) =>
    async (ctx: RequestContext): Promise<Reply> => {
      const caller = await pageUser(ctx);
      if (!('user' in caller)) return caller;
      const job = view === 'job' ? ctx.params.name! : undefined;
      if (job !== undefined) {
        // Someone else's job is simply not there: the same 404 as a job that never existed.
        try {
          await deps.backend.getJob(caller.user.namespace, job);
        } catch (error) {
          // Kubernetes' own 404 arrives untranslated: map it as the router would.
          if (toHttpError(error).status === 404) {
            return messagePage(
              prefix,
              404,
              'No such job',
              `You have no job named "${job}". It may have been deleted, or removed after its time-to-live.`,
              { href: prefix, text: 'All jobs' },
            );
          }
          throw error;
        }
      }
      return shellPage({ prefix, view, user: caller.user.name, csrf: caller.session?.csrf ?? '', job });
    };

  const routes: RouteDefinition[] = [
    {
      method: 'GET',
      path: '/',
      handler: async (ctx) => {
        // `/` is also every function's readiness probe and the upstream API's root: JSON unless a browser asks for a page.
        if (!wantsHtml(ctx.req.headers.accept)) return { json: { message: 'kbatch' } };
        return page('jobs')(ctx);
      },
    },
    { method: 'GET', path: '/new', handler: page('new') },
    { method: 'GET', path: '/job/:name', handler: page('job') },
    {
      method: 'GET',
      path: '/static/app.js',
      handler: async () => asset(appScript, 'text/javascript; charset=utf-8', assetVersions.script),
    },
    { method: 'GET', path: '/static/app.css', handler: async () => asset(appStyles, 'text/css; charset=utf-8', assetVersions.styles) },
  ];
  if (web) routes.push(...loginRoutes(deps, web, { cookie, safeNext }));
  return routes;
}

function asset(text: string, contentType: string, version: string): Reply {
  return {
    text,
    contentType,
    headers: { 'cache-control': 'public, max-age=31536000, immutable', etag: `"${version}"`, 'x-content-type-options': 'nosniff' },
  };
}

interface LoginHelpers {
  cookie: (ctx: RequestContext, name: string, value: string, maxAge: number) => string;
  safeNext: (raw: string | null) => string;
}

/** What `POST {hub}/oauth2/token` answers. */
interface TokenReply {
  access_token?: unknown;
  expires_in?: unknown;
}

/**
 * Hub OAuth, authorization-code flow with PKCE, as JupyterHub's own HubOAuth does it: `login` sends
 * the browser to the Hub with a random `state` whose twin sits sealed in a cookie; `oauth_callback`
 * accepts a code only with that cookie and a matching state, and trades it for a token with the
 * client secret. A callback this browser did not start (a forged link, a code from someone else's
 * login) finds no matching state and is refused.
 */
function loginRoutes(deps: Deps, web: WebSettings, { cookie, safeNext }: LoginHelpers): RouteDefinition[] {
  const prefix = deps.settings.prefix;
  const refused = (ctx: RequestContext, status: number, message: string) =>
    messagePage(
      prefix,
      status,
      'Login refused',
      message,
      { href: `${prefix}login`, text: 'Log in again' },
      { 'set-cookie': cookie(ctx, stateCookie, '', 0) },
    );

  return [
    {
      method: 'GET',
      path: '/login',
      handler: async (ctx) => {
        const state = { nonce: randomToken(), verifier: randomToken(), next: safeNext(ctx.query.get('next')) };
        const challenge = createHash('sha256').update(state.verifier).digest('base64url');
        const authorize = new URL(web.authorizeUrl, 'http://placeholder');
        authorize.search = new URLSearchParams({
          client_id: web.clientId,
          redirect_uri: web.redirectUri,
          response_type: 'code',
          state: state.nonce,
          code_challenge: challenge,
          code_challenge_method: 'S256',
        }).toString();
        // A relative authorize URL (the usual case: the Hub on the same host) stays relative.
        const location = /^https?:\/\//.test(web.authorizeUrl) ? authorize.href : authorize.pathname + authorize.search;
        return redirect(location, { 'set-cookie': cookie(ctx, stateCookie, await sealState(state, web.cookieKey), stateMaxAgeSeconds) });
      },
    },
    {
      method: 'GET',
      path: '/oauth_callback',
      handler: async (ctx) => {
        const error = ctx.query.get('error');
        if (error)
          return refused(
            ctx,
            403,
            `The Hub did not authorize kbatch: ${error}${ctx.query.get('error_description') ? ` (${ctx.query.get('error_description')})` : ''}`,
          );
        const code = ctx.query.get('code');
        const state = await openState(readCookies(ctx.req.headers).get(stateCookie), web.cookieKey);
        if (!state) return refused(ctx, 400, 'This login was not started from this browser, or took longer than 10 minutes.');
        if (!sameSecret(ctx.query.get('state') ?? undefined, state.nonce))
          return refused(ctx, 400, 'The login state does not match the one this browser started with.');
        if (!code) return refused(ctx, 400, 'The Hub sent no authorization code.');

        let token: string;
        let expiresIn: number | undefined;
        // Checked now, with the same rule as every request, so a token without the kbatch scope gets a clear page, not a loop.
        try {
          ({ token, expiresIn } = await exchangeCode(web, code, state.verifier));
          const user = await deps.auth.authenticate({ authorization: `token ${token}` });
          await checkOwnNamespace(deps, user);
        } catch (failure) {
          if (failure instanceof HttpError) return refused(ctx, failure.status, failure.message);
          throw failure;
        }
        const maxAge = Math.max(1, Math.min(web.sessionMaxAgeSeconds, expiresIn ?? Infinity));
        const sealed = await sealSession({ token, csrf: randomToken() }, web.cookieKey, maxAge);
        return redirect(state.next, { 'set-cookie': [cookie(ctx, sessionCookie, sealed, maxAge), cookie(ctx, stateCookie, '', 0)] });
      },
    },
    {
      method: 'GET',
      path: '/logout',
      handler: async (ctx) =>
        // Forgets the session here; the Hub login stays (logging out of the Hub is the Hub's own link).
        messagePage(
          prefix,
          200,
          'Logged out',
          'You are logged out of kbatch.',
          { href: `${prefix}login`, text: 'Log in again' },
          { 'set-cookie': cookie(ctx, sessionCookie, '', 0) },
        ),
    },
  ];
}

async function exchangeCode(web: WebSettings, code: string, verifier: string): Promise<{ token: string; expiresIn?: number }> {
  let response: Response;
  try {
    response = await fetch(web.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({
        client_id: web.clientId,
        client_secret: web.clientSecret,
        grant_type: 'authorization_code',
        code,
        redirect_uri: web.redirectUri,
        code_verifier: verifier,
      }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new Unavailable(`JupyterHub unreachable at ${web.tokenUrl}: ${(error as Error).message}`);
  }
  // A used, expired or foreign code is the Hub's 400; a wrong client secret its 401.
  if (response.status === 400 || response.status === 401 || response.status === 403) {
    throw new Forbidden(`The Hub refused the login (${response.status}); log in again`);
  }
  const body = (await response.json().catch(() => ({}))) as TokenReply;
  if (!response.ok || typeof body.access_token !== 'string')
    throw new BadGateway(`The Hub's token endpoint answered ${response.status} without a token`);
  return { token: body.access_token, expiresIn: typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : undefined };
}
