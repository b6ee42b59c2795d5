import * as k8s from '@kubernetes/client-node';
import { getGlobalDispatcher, type Dispatcher } from 'undici';
import { kubernetesDuration, kubernetesResource } from '../observability/metrics.ts';

/**
 * Authentication for client-node's generated API clients that keeps ONE connection pool per process.
 *
 * client-node 2.x builds a new undici Agent for every request (KubeConfig.applySecurityAuthentication),
 * so every API call pays a fresh TLS handshake: about 11 ms and 9 ms of CPU per call on 2 cores, against
 * about 5 ms and 3 ms over a reused keep-alive connection (shared/reference/measured-facts.md). The
 * kubeconfig still supplies the headers on each call, so rotating credentials (in-cluster token files,
 * exec plugins) keep working; only the transport is kept.
 */
export class PooledKubeAuthentication implements k8s.SecurityAuthentication {
  private dispatcher: Dispatcher | undefined;

  constructor(private readonly kubeConfig: k8s.KubeConfig) {}

  getName(): string {
    return 'kubeconfig authentication over one connection pool';
  }

  async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await this.kubeConfig.applySecurityAuthentication(context);
    // The first Agent the kubeconfig builds carries its TLS settings (CA, client certificate); keep it.
    this.dispatcher ??= context.getDispatcher() as Dispatcher | undefined;
    if (this.dispatcher) context.setDispatcher(this.dispatcher);
  }

  async close(): Promise<void> {
    await this.dispatcher?.close().catch(() => undefined);
  }
}

/**
 * The generated clients' transport with every call timed (until the response headers, so a watch
 * or log stream counts its start, not its length) into `kbatch_kubernetes_request_duration_seconds`.
 * One wrapper here times every call of every generated client, none of the call sites.
 */
function timedHttpLibrary(): k8s.HttpLibrary {
  const inner = new k8s.IsomorphicFetchHttpLibrary();
  return k8s.wrapHttpLibrary({
    async send(request) {
      const url = request.getUrl();
      const endTimer = kubernetesDuration.startTimer({
        method: request.getHttpMethod().toString(),
        resource: kubernetesResource(new URL(url).pathname),
      });
      try {
        const response = await inner.send(request).toPromise();
        endTimer({ outcome: String(response.httpStatusCode) });
        return response;
      } catch (error) {
        endTimer({ outcome: 'error' });
        throw error;
      }
    },
  });
}

/** A list as the API server sends it (client-node's models rename `continue` to `_continue`). */
export interface RawList<T> {
  items: T[];
  metadata?: { continue?: string; resourceVersion?: string };
}

/**
 * A GET answered with the API server's JSON as plain objects, over the same pool and credentials as
 * the generated clients. Those turn every answer into client-node's model classes: ObjectSerializer
 * walks every field of every item, about half the CPU of listing 50 jobs, plus the web-stream fetch
 * and gzip (the API server compresses large answers when asked; undici's request() does not ask,
 * which on the cluster's own network costs less than inflating). Timestamps stay RFC 3339 strings
 * where the models hold Dates, and fields newer than the models are kept: callers type the result
 * accordingly (lib/jobs/views.ts reads either).
 */
export async function getJson<T>(
  kubeConfig: k8s.KubeConfig,
  auth: PooledKubeAuthentication,
  path: string,
  query: Record<string, string | number | undefined> = {},
  options: { withoutManagedFields?: boolean } = {},
): Promise<T> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('No active cluster in the kubeconfig');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') url.searchParams.set(key, String(value));
  const context = new k8s.RequestContext(url.toString(), k8s.HttpMethod.GET);
  await auth.applySecurityAuthentication(context);
  const dispatcher = (context.getDispatcher() as Dispatcher | undefined) ?? getGlobalDispatcher();
  const endTimer = kubernetesDuration.startTimer({ method: 'GET', resource: kubernetesResource(url.pathname) });
  let response: Dispatcher.ResponseData;
  try {
    response = await dispatcher.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method: 'GET',
      headers: { ...context.getHeaders(), accept: 'application/json' },
    });
  } catch (error) {
    endTimer({ outcome: 'error' });
    throw error;
  }
  endTimer({ outcome: String(response.statusCode) });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  // The same error the generated clients throw, so toHttpError and status checks treat both alike.
  if (response.statusCode !== 200) throw new k8s.ApiException(response.statusCode, `HTTP ${response.statusCode}`, bytes.toString(), {});
  if (options.withoutManagedFields) {
    try {
      return JSON.parse(textWithoutManagedFields(bytes)) as T;
    } catch {
      /* a cut in the wrong place (see textWithoutManagedFields) leaves invalid JSON: read it whole */
    }
  }
  return JSON.parse(bytes.toString()) as T;
}

const managedFieldsStart = Buffer.from(',"managedFields":[');
const managedFieldsEnd = Buffer.from(']}');

/**
 * The answer's text without each object's `metadata.managedFields`: half the bytes of a Job list, and
 * the costliest half to parse (every field path is a key of its own). The API server writes
 * managedFields last in ObjectMeta and it holds no arrays, so it ends at the first `]}` (closing the
 * list and the metadata). Cut on the bytes, so the whole answer never becomes one (large-object) string;
 * the patterns are ASCII, so no UTF-8 sequence is split. A `]}` inside a string (a field manager's
 * name) would cut early and leave unbalanced brackets: JSON.parse refuses that and the caller reads the
 * answer whole.
 */
export function textWithoutManagedFields(bytes: Buffer): string {
  const parts: string[] = [];
  let from = 0;
  for (;;) {
    const start = bytes.indexOf(managedFieldsStart, from);
    const end = start < 0 ? -1 : bytes.indexOf(managedFieldsEnd, start + managedFieldsStart.length);
    if (end < 0) break;
    parts.push(bytes.toString('utf8', from, start));
    from = end + 1; // keep the `}` that closes the metadata
  }
  parts.push(bytes.toString('utf8', from));
  return parts.join('');
}

/** A generated API client (CoreV1Api, BatchV1Api, ...) whose calls share `auth`'s connection pool. */
export function makePooledApiClient<T>(
  kubeConfig: k8s.KubeConfig,
  auth: PooledKubeAuthentication,
  apiClientType: new (config: k8s.Configuration) => T,
): T {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('No active cluster in the kubeconfig');
  return new apiClientType(
    k8s.createConfiguration({
      baseServer: new k8s.ServerConfiguration(cluster.server, {}),
      authMethods: { default: auth },
      httpApi: timedHttpLibrary(),
    }),
  );
}
