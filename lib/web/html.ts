import { createHash } from 'node:crypto';
import type { Reply, ReplyHeaders } from '../http/router.ts';
import { appScript } from './script.ts';
import { appStyles } from './styles.ts';

/**
 * The page's HTML: a small server-rendered shell (who is logged in, where the API is, the anti-CSRF
 * token) that the script fills in. Data from users never reaches this HTML except escaped; the
 * script renders everything else with textContent.
 */

export type View = 'jobs' | 'job' | 'new';

/** Every character that could end an attribute or start a tag, so the result is safe in both. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const version = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 12);
/** Content hashes in the asset URLs: cached for a year, and a new release is a new URL. */
export const assetVersions = { script: version(appScript), styles: version(appStyles) };

/**
 * No inline script or style at all, so an injected `<script>` or `onerror=` would not run even if
 * some markup slipped through; no framing (clickjacking of the Delete button).
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function pageHeaders(extra: ReplyHeaders = {}): ReplyHeaders {
  return {
    'content-security-policy': contentSecurityPolicy,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'same-origin',
    // The HTML carries the session's anti-CSRF token: never store it in a shared cache.
    'cache-control': 'no-store',
    ...extra,
  };
}

const titles: Record<View, string> = { jobs: 'Jobs', job: 'Job', new: 'Submit a job' };

function layout(prefix: string, title: string, head: string, user: string | undefined, body: string, logout = false): string {
  const logoutLink = logout ? `<span aria-hidden="true"> · </span><a href="${escapeHtml(prefix)}logout">Log out</a>` : '';
  const who = user ? `<p class="who">Signed in as <strong>${escapeHtml(user)}</strong>${logoutLink}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · kbatch</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${escapeHtml(prefix)}static/app.css?v=${assetVersions.styles}">
${head}</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<nav aria-label="kbatch"><a class="brand" href="${escapeHtml(prefix)}">kbatch</a><a href="${escapeHtml(prefix)}">Jobs</a><a href="${escapeHtml(prefix)}new">Submit a job</a></nav>
${who}
</header>
<main id="main" tabindex="-1">
${body}
</main>
</body>
</html>
`;
}

export interface ShellOptions {
  prefix: string;
  view: View;
  user: string;
  /** Empty when the server runs without login (KBATCH_AUTH=none), which also has no logout. */
  csrf: string;
  job?: string;
  status?: number;
}

/** The page for one view; the script reads its parameters from the meta tags and data attributes. */
export function shellPage(options: ShellOptions): Reply {
  const { prefix, view } = options;
  const head = [
    `<meta name="kbatch-root" content="${escapeHtml(prefix)}">`,
    `<meta name="kbatch-csrf" content="${escapeHtml(options.csrf)}">`,
    `<script src="${escapeHtml(prefix)}static/app.js?v=${assetVersions.script}" defer></script>`,
    '',
  ].join('\n');
  const title = options.job ? `${options.job} · ${titles[view]}` : titles[view];
  const body = `<div id="app" data-view="${view}" data-job="${escapeHtml(options.job ?? '')}"><p class="state-loading" role="status">Loading…</p></div>
<noscript><p class="error">This page needs JavaScript. The same actions are available from the kbatch command line.</p></noscript>`;
  return {
    status: options.status ?? 200,
    text: layout(prefix, title, head, options.user, body, options.csrf !== ''),
    contentType: 'text/html; charset=utf-8',
    headers: pageHeaders(),
  };
}

/** A page with a message and no script: login refusals, a job that is not there, logout. */
export function messagePage(
  prefix: string,
  status: number,
  title: string,
  message: string,
  link?: { href: string; text: string },
  headers: ReplyHeaders = {},
): Reply {
  const action = link ? `<p><a class="button" href="${escapeHtml(link.href)}">${escapeHtml(link.text)}</a></p>` : '';
  const body = `<h1>${escapeHtml(title)}</h1>\n<p class="message">${escapeHtml(message)}</p>\n${action}`;
  return {
    status,
    text: layout(prefix, title, '', undefined, body),
    contentType: 'text/html; charset=utf-8',
    headers: pageHeaders(headers),
  };
}

export function redirect(location: string, headers: ReplyHeaders = {}): Reply {
  return { status: 302, empty: true, headers: { location, 'cache-control': 'no-store', ...headers } };
}

/** True when the client asked for a page (a browser navigation), not for JSON. */
export function wantsHtml(accept: string | undefined): boolean {
  return /\btext\/html\b/i.test(accept ?? '');
}
