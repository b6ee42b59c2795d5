import type { Deps } from '../api/deps.ts';
import { describeError } from '../http/lifecycle.ts';
import { logEvent } from './request-log.ts';

export interface CheckResult {
  ok: boolean;
  /** What failed, in a word or two: never a URL or a message from the dependency (/readyz is unauthenticated). */
  error?: 'timeout' | 'unreachable' | `HTTP ${number}`;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, CheckResult>;
}

type Check = (signal: AbortSignal) => Promise<void>;

class HttpStatusError extends Error {
  constructor(readonly status: number) {
    super(`answered HTTP ${status}`);
  }
}

async function runCheck(name: string, check: Check, timeoutMs: number): Promise<CheckResult> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    // Raced as well, in case the check ignores its signal.
    await Promise.race([
      check(signal),
      new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
    ]);
    return { ok: true };
  } catch (error) {
    const result: CheckResult = {
      ok: false,
      error: error instanceof HttpStatusError ? `HTTP ${error.status}` : signal.aborted ? 'timeout' : 'unreachable',
    };
    logEvent('warn', 'readiness check failed', { check: name, error: describeError(error) });
    return result;
  }
}

/**
 * Readiness: can this process serve a request now? Only what every request needs counts: the
 * backend (the Kubernetes API, or the local data dir) and, with Hub auth, the Hub API. The verdict
 * is reused for `readyCacheSeconds` and concurrent probes share one check, so probes from the
 * kubelet and the queue-proxy cost the dependencies at most one call each per few seconds.
 * Liveness (/healthz) asks nothing of anyone: a Hub outage must not get every pod restarted.
 */
export function createReadiness(deps: Deps, fetchImpl: typeof fetch = fetch): () => Promise<Readiness> {
  const { settings } = deps;
  // Built on the first probe, not with the route table: building routes touches no dependency.
  let checks: Record<string, Check> | undefined;
  const checksOf = (): Record<string, Check> => {
    if (checks) return checks;
    checks = { [deps.backend.kind]: (signal) => deps.backend.ping(signal) };
    if (settings.auth === 'hub') {
      // The API root answers its version without a token.
      checks.hub = async (signal) => {
        const response = await fetchImpl(`${settings.hubApiUrl}/`, { signal });
        await response.body?.cancel();
        if (!response.ok) throw new HttpStatusError(response.status);
      };
    }
    return checks;
  };
  let cached: { until: number; result: Readiness } | undefined;
  let pending: Promise<Readiness> | undefined;
  return async () => {
    if (cached && cached.until > Date.now()) return cached.result;
    pending ??= (async () => {
      const entries = await Promise.all(
        Object.entries(checksOf()).map(async ([name, check]) => [name, await runCheck(name, check, settings.readyTimeoutMs)] as const),
      );
      const result: Readiness = { ready: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) };
      cached = { until: Date.now() + settings.readyCacheSeconds * 1000, result };
      return result;
    })().finally(() => (pending = undefined));
    return pending;
  };
}
