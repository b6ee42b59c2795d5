/**
 * The CLI's error model: every failure becomes one of these and is printed as one or two lines on
 * stderr, never as a stack trace. Exit codes: 1 for API and job failures, 2 for usage errors.
 */
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

/** The server answered with an error status; `detail` is its `{"detail"}` (or the raw body). */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly detail: string,
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
}

/** Maps an HTTP error status to the message a user can act on; the server's detail is always kept. */
export function apiErrorFor(status: number, detail: string, baseUrl: string, subject: RequestSubject = {}): ApiError {
  const said = detail ? `: ${detail}` : '';
  if (status === 401) {
    return new ApiError(`not logged in or token invalid: run kbatch configure / set JUPYTERHUB_API_TOKEN (HTTP 401${said})`, status, detail);
  }
  if (status === 403) {
    return new ApiError(`permission denied (HTTP 403)${said}`, status, detail, `your JupyterHub token needs the scope ${kbatchScope}; ask your Hub admin to grant it`);
  }
  if (status === 404) {
    // A 404 from the router (or an HTML page from the Hub) means the URL is not a kbatch API at all.
    if (/^No route for /.test(detail) || !subject.what) {
      return new ApiError(`not found at ${baseUrl} (HTTP 404${said})`, status, detail, 'check the kbatch URL (kbatch configure --url)');
    }
    if (/^No pods found/.test(detail)) return new ApiError(detail, status, detail);
    return new ApiError(`${subject.what} not found (HTTP 404${said})`, status, detail);
  }
  if (status === 409) return new ApiError(`conflict (HTTP 409)${said}`, status, detail);
  if (status === 413) return new ApiError(`upload too large (HTTP 413)${said}`, status, detail, 'leave large data out of --code (it skips .git, node_modules, __pycache__) and read it from storage instead');
  if (status >= 500) return new ApiError(`server error (HTTP ${status})${said}`, status, detail);
  const kind = status === 400 || status === 422 ? 'invalid request' : 'request failed';
  return new ApiError(`${kind} (HTTP ${status})${said}`, status, detail);
}

/** The request never got an HTTP answer: refused, reset, DNS failure. Log following retries these. */
export class UnreachableError extends CliError {}

export function unreachable(baseUrl: string, error: unknown): UnreachableError {
  const code = networkErrorCode(error) ?? (error as Error)?.message ?? String(error);
  return new UnreachableError(`cannot reach kbatch at ${baseUrl} (${code})`, 1, 'check the URL (kbatch configure --url, $KBATCH_URL) and that the server is running');
}

/** The single place that turns anything thrown into text for stderr. */
export function describeError(error: unknown): { message: string; hint?: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, hint: error.hint, exitCode: error.exitCode };
  const message = error instanceof Error ? error.message : String(error);
  return { message: `unexpected error: ${message}`, exitCode: 1 };
}
