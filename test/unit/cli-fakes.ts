/** Stand-ins for the CLI's transport, shared by the CLI's unit suites. */
import type { FetchLike, HttpResponse } from '../../cli/http.ts';

/** A canned answer, as the transport would give it. */
export function answer(status: number, payload: unknown, contentType = 'application/json'): HttpResponse {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => (name.toLowerCase() === 'content-type' ? contentType : null) },
    text: async () => text,
    body: (async function* () {
      yield Buffer.from(text);
    })(),
  };
}

/** What a connection cut by a restarting server looks like to node: no answer, ECONNRESET. */
export const reset = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
export const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });

export type Step = HttpResponse | (() => Error);

/** A fetch that plays its steps in order, one per request, and records the URLs it was asked for. */
export function scripted(steps: Step[]): { fetch: FetchLike; urls: string[]; methods: string[]; headers: Record<string, string>[] } {
  const urls: string[] = [];
  const methods: string[] = [];
  const headers: Record<string, string>[] = [];
  const fetch: FetchLike = async (url, init) => {
    urls.push(url);
    methods.push(init.method);
    headers.push(init.headers);
    const step = steps.shift();
    if (!step) throw new Error(`unexpected request ${init.method} ${url}`);
    if (typeof step === 'function') throw step();
    return step;
  };
  return { fetch, urls, methods, headers };
}

/**
 * A binary answer (an output file, an archive) with the given headers, its body in `chunks`; with
 * `cut`, the body then fails as a connection dropped mid-body does (node-fetch's premature close).
 */
export function bytes(
  status: number,
  chunks: Buffer[],
  headers: Record<string, string> = {},
  options: { cut?: boolean } = {},
): HttpResponse {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => lower.get(name.toLowerCase()) ?? null },
    text: async () => Buffer.concat(chunks).toString(),
    body: (async function* () {
      for (const chunk of chunks) yield chunk;
      if (options.cut) throw Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    })(),
  };
}
