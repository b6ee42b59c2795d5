import { HubAuth } from './auth/hub.ts';
import type { Authenticator } from './auth/types.ts';
import { LocalUserAuth } from './auth/local.ts';
import type { Backend } from './backend/types.ts';
import { LocalBackend } from './backend/local/index.ts';
import { ConfigError, type Settings } from './config.ts';
import { createRouter, type RouteDefinition } from './http/router.ts';
import { loadAdminConfig } from './jobs/admin-config.ts';
import type { Deps } from './api/deps.ts';
import { healthRoutes, jobRoutes, submitRoutes, uploadRoutes } from './api/native.ts';
import { cronJobActionRoutes } from './api/cronjobs.ts';
import { outputRoutes } from './api/outputs.ts';
import { openApiRoute } from './api/openapi.ts';
import { upstreamJobRoutes, upstreamSubmitRoutes } from './upstream/routes.ts';
import { SessionAuthenticator } from './web/auth.ts';
import { webRoutes } from './web/routes.ts';

export type TargetName = 'submit' | 'jobs' | 'uploads' | 'all';

export async function createBackend(settings: Settings): Promise<Backend> {
  if (settings.backend === 'local') return new LocalBackend(settings.localDataDir, settings.outputsRetentionSeconds);
  // Imported lazily: client-node costs ~0.4 s and ~130 MB, which the local backend never needs.
  const { KubernetesBackend } = await import('./backend/kubernetes.ts');
  try {
    return new KubernetesBackend({ ...settings });
  } catch (error) {
    // client-node throws on an unreadable or malformed kubeconfig: a configuration error, not a crash.
    throw new ConfigError(
      `cannot load the Kubernetes configuration${settings.kubeconfig ? ` from ${settings.kubeconfig}` : ''}: ${(error as Error).message}`,
    );
  }
}

export async function createDeps(settings: Settings, overrides: { auth?: Authenticator; backend?: Backend } = {}): Promise<Deps> {
  const auth =
    overrides.auth ??
    (settings.auth === 'none'
      ? new LocalUserAuth(settings.localUser)
      : new HubAuth({ hubApiUrl: settings.hubApiUrl, serviceName: settings.serviceName, cacheSeconds: settings.authCacheSeconds }));
  return {
    settings,
    admin: loadAdminConfig(settings),
    // With the web page on, the page's session cookie is accepted wherever a token is (lib/web/auth.ts).
    auth: settings.web ? new SessionAuthenticator(auth, settings.web.cookieKey) : auth,
    backend: overrides.backend ?? (await createBackend(settings)),
  };
}

/** The API routes by the function that serves them. */
function apiRoutesByTarget(deps: Deps): Record<Exclude<TargetName, 'all'>, () => RouteDefinition[]> {
  return {
    submit: () => [...submitRoutes(deps), ...upstreamSubmitRoutes(deps)],
    uploads: () => uploadRoutes(deps),
    // openapi.json documents the whole API, though only the jobs function serves it.
    jobs: () => [
      openApiRoute(deps.settings.prefix, () => apiRoutes(deps)),
      ...jobRoutes(deps),
      ...outputRoutes(deps),
      ...upstreamJobRoutes(deps),
      ...cronJobActionRoutes(deps),
    ],
  };
}

/** Every API route (all but the web page's), whichever function serves it: what openapi.json documents. */
export function apiRoutes(deps: Deps): RouteDefinition[] {
  const byTarget = apiRoutesByTarget(deps);
  return [...healthRoutes(deps), ...byTarget.submit(), ...byTarget.uploads(), ...byTarget.jobs()];
}

/** The routes each deployable function serves; `all` is the one-process server. */
export function routesFor(target: TargetName, deps: Deps): RouteDefinition[] {
  const byTarget = apiRoutesByTarget(deps);
  // The web page rides with the reads (the gateway sends every GET to the jobs function); its `/`
  // (HTML for browsers, else the same JSON) must come before the health route's.
  if (target === 'all') return [...webRoutes(deps), ...healthRoutes(deps), ...byTarget.submit(), ...byTarget.uploads(), ...byTarget.jobs()];
  if (target === 'jobs') return [...webRoutes(deps), ...healthRoutes(deps), ...byTarget.jobs()];
  return [...healthRoutes(deps), ...byTarget[target]()];
}

export function createHandler(target: TargetName, deps: Deps) {
  return createRouter(deps.settings.prefix, routesFor(target, deps));
}
