import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus metrics, served on `/metrics` by every function (Knative scrapes each pod).
 * Labels are bounded on purpose: route patterns (`/api/v1/jobs/:name`), never raw paths, user names
 * or job names, so the series carry no user data and their number does not grow with use.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'kbatch_' });

/** From a fast list to a long upload; log streams are counted by duration too, so the top bucket is wide. */
const requestBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];
const dependencyBuckets = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export const httpRequests = new Counter({
  name: 'kbatch_http_requests_total',
  help: 'HTTP requests answered, by method, route pattern and status',
  labelNames: ['method', 'route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new Histogram({
  name: 'kbatch_http_request_duration_seconds',
  help: 'Time from request to the end of the answer (a log stream counts until it ends), by method, route pattern and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: requestBuckets,
  registers: [registry],
});

export const hubDuration = new Histogram({
  name: 'kbatch_hub_request_duration_seconds',
  help: 'JupyterHub API calls (token lookups), by endpoint and outcome (HTTP status, or "error" when unreachable)',
  labelNames: ['endpoint', 'outcome'] as const,
  buckets: dependencyBuckets,
  registers: [registry],
});

export const kubernetesDuration = new Histogram({
  name: 'kbatch_kubernetes_request_duration_seconds',
  help: 'Kubernetes API calls until the response headers, by method, resource and outcome (HTTP status, or "error")',
  labelNames: ['method', 'resource', 'outcome'] as const,
  buckets: dependencyBuckets,
  registers: [registry],
});

export const authCache = new Counter({
  name: 'kbatch_auth_cache_total',
  help: 'Token lookups: "hit" answered from the cache, "shared" joined a lookup in flight, "miss" asked the Hub',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const openLogStreams = new Gauge({
  name: 'kbatch_open_log_streams',
  help: 'Job log streams being sent right now',
  registers: [registry],
});

export const uploadBytes = new Counter({
  name: 'kbatch_upload_bytes_total',
  help: 'Bytes of code archives accepted (uploads and multipart submits), after normalisation',
  registers: [registry],
});

/**
 * The resource a Kubernetes API path addresses, for a label: `/api/v1/namespaces/x/pods/y/log` is
 * `pods/log`, `/apis/batch/v1/jobs` is `jobs`. Names are never part of it.
 */
export function kubernetesResource(path: string): string {
  const segments = path.split('?')[0]!.split('/').filter(Boolean);
  const ns = segments.indexOf('namespaces');
  if (ns >= 0 && segments.length > ns + 2) {
    const resource = segments[ns + 2]!;
    return segments[ns + 4] ? `${resource}/${segments[ns + 4]}` : resource;
  }
  if (ns >= 0) return 'namespaces';
  // /api, /api/v1/<resource>[/name], /apis/<group>/<version>/<resource>[/name]
  const start = segments[0] === 'apis' ? 3 : 2;
  return segments[start] ?? segments[0] ?? 'root';
}
