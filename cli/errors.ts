/**
 * The CLI's error model: every failure becomes one of these and is printed as one or two lines on
 * stderr, never as a stack trace. Exit codes: 1 for API and job failures, 2 for usage errors.
 */
import { errorReasons, isErrorBody, type ErrorReason } from '../lib/contract.ts';
import { networkErrorCode } from '../lib/net.ts';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad flags, bad JSON in a flag, a missing required value: the command never reached the server. */
export class UsageError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, 2, hint);
  }
}

/** The server (or a proxy in front of it) answered with an error status. */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    /** The server's `detail`, or the text of a body that was not ours (a proxy's HTML page). */
    readonly detail: string,
    /** The contract's reason, or the one the status implies when the body had none (a proxy's page). */
    readonly reason: ErrorReason | undefined,
    hint?: string,
  ) {
    super(message, 1, hint);
  }
}

export const kbatchScope = 'access:services!service=kbatch';

/** What the caller was asking about, so a 404 can say "job X not found" instead of "not found". */
export interface RequestSubject {
  /** e.g. `job hello-x7k2p` */
  what?: string;
  /** The body is uploaded code: a 413 without a reason (an older server, a proxy) is about its size. */
  upload?: boolean;
}

/** What an error answer said: the contract's body when it is one, else the body as short text. */
export interface ErrorAnswer {
  detail: string;
  reason?: ErrorReason;
  field?: string;
  /** The body was a JSON `{"detail"}`: it came from kbatch (or upstream's proxy), not from a proxy page. */
  json: boolean;
}

/** Readable text of a foreign body: an HTML page loses its head, scripts and tags (the Hub's 503 page is mostly script). */
function shortText(text: string): string {
  const plain = text
    .replace(/<(head|script|style)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return plain.length > 300 ? `${plain.slice(0, 300)}…` : plain;
}

/**
 * Reads an error body. A known `reason` is trusted; one this CLI does not know yet (a newer server)
 * is dropped, so the status decides. `{"detail"}` without a reason (an older server, upstream's
 * shape) keeps its detail; anything else (an HTML page from a proxy) becomes short plain text.
 */
export function readErrorAnswer(text: string): ErrorAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { detail: shortText(text), json: false };
  }
  if (isErrorBody(parsed)) {
    const known = (errorReasons as readonly string[]).includes(parsed.reason);
    return { detail: parsed.detail, reason: known ? parsed.reason : undefined, field: parsed.field, json: true };
  }
  const detail = (parsed as { detail?: unknown } | null)?.detail;
  if (typeof detail === 'string') return { detail, json: true };
  if (detail !== undefined) return { detail: JSON.stringify(detail), json: true };
  return { detail: shortText(text), json: false };
}

const hints = {
  url: 'check the kbatch URL (kbatch configure --url)',
  login: 'run kbatch configure --token TOKEN, or set $JUPYTERHUB_API_TOKEN',
  scope: `your JupyterHub token needs the scope ${kbatchScope}; ask your Hub admin to grant it`,
  owner: 'your kbatch namespace is recorded as belonging to another Hub user; ask your Hub admin to sort it out',
  upload: 'leave large data out of --code (it skips .git, node_modules, __pycache__) and read it from storage instead',
  body: 'large values (env, args) belong in --code or in storage the job reads',
  later: 'a service kbatch depends on is unavailable; try again in a minute',
};

/** A reason-less status from something in front of kbatch: what it most likely means. */
function reasonFromStatus(status: number, subject: RequestSubject, fromKbatch: boolean): ErrorReason | undefined {
  if (status === 401) return 'Unauthorized';
  if (status === 403) return 'Forbidden';
  // A JSON 404 about something we asked for is that thing missing; any other 404 is a wrong URL.
  if (status === 404) return fromKbatch && subject.what ? 'NotFound' : 'NoRoute';
  if (status === 413) return 'PayloadTooLarge';
  if (status === 502 || status === 504) return 'BadGateway';
  if (status === 503) return 'Unavailable';
  return undefined;
}

/**
 * Maps an error answer to the message a user can act on, by the body's `reason` (never by its
 * prose); the server's detail is always kept.
 */
export function apiErrorFor(status: number, answer: ErrorAnswer, baseUrl: string, subject: RequestSubject = {}): ApiError {
  const { detail } = answer;
  const said = detail ? `: ${detail}` : '';
  const reason = answer.reason ?? reasonFromStatus(status, subject, answer.json);
  const error = (message: string, hint?: string) => new ApiError(message, status, detail, reason, hint);
  switch (reason) {
    case 'Unauthorized':
      return error(`not logged in or token invalid (HTTP 401${said})`, hints.login);
    case 'Forbidden':
      return error(`permission denied (HTTP 403)${said}`, hints.scope);
    case 'NamespaceOwnedByOther':
      return error(`permission denied (HTTP 403)${said}`, hints.owner);
    case 'NoRoute':
      return error(`not found at ${baseUrl} (HTTP 404${said})`, hints.url);
    case 'NoPods':
      return error(
        detail || `${subject.what ?? 'the job'} has no pods yet`,
        subject.what ? `see why with kbatch job show ${subject.what.replace(/^job /, '')}` : undefined,
      );
    case 'NotFound':
      return error(`${subject.what ?? 'it'} not found (HTTP 404${said})`);
    case 'Conflict':
      return error(`conflict (HTTP 409)${said}`);
    case 'UploadTooLarge':
      return error(`upload too large (HTTP 413)${said}`, hints.upload);
    case 'PayloadTooLarge':
      // On an upload the code is what is too large, whichever of the two reasons the server chose.
      if (subject.upload) return error(`upload too large (HTTP 413)${said}`, hints.upload);
      return error(`request too large (HTTP 413)${said}`, hints.body);
    case 'NotImplemented':
      return error(`not available on this server (HTTP ${status})${said}`);
    case 'Unavailable':
    case 'BadGateway':
      return error(`kbatch is unavailable (HTTP ${status})${said}`, hints.later);
  }
  if (status >= 500) return error(`server error (HTTP ${status})${said}`);
  const kind = status === 400 || status === 422 ? 'invalid request' : 'request failed';
  return error(`${kind} (HTTP ${status})${said}`);
}

/** The request never got an HTTP answer: refused, reset, DNS failure. Log following retries these. */
export class UnreachableError extends CliError {}

export function unreachable(baseUrl: string, error: unknown): UnreachableError {
  const code = networkErrorCode(error) ?? (error as Error)?.message ?? String(error);
  return new UnreachableError(
    `cannot reach kbatch at ${baseUrl} (${code})`,
    1,
    'check the URL (kbatch configure --url, $KBATCH_URL) and that the server is running',
  );
}

/** The single place that turns anything thrown into text for stderr. */
export function describeError(error: unknown): { message: string; hint?: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, hint: error.hint, exitCode: error.exitCode };
  const message = error instanceof Error ? error.message : String(error);
  return { message: `unexpected error: ${message}`, exitCode: 1 };
}
