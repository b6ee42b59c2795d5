import { HubAuth } from './auth/hub.ts';
import type { Authenticator } from './auth/types.ts';
import { LocalUserAuth } from './auth/local.ts';
import type { Backend } from './backend/types.ts';
import { LocalBackend } from './backend/local/index.ts';
import { ConfigError, type Settings } from './config.ts';
import { createRouter, type RouteDefinition } from './http/router.ts';
import { loadAdminConfig } from './k8s/admin.ts';
import type { Deps } from './api/deps.ts';
import { healthRoutes, jobRoutes, submitRoutes, uploadRoutes } from './api/native.ts';
import { upstreamJobRoutes, upstreamSubmitRoutes } from './api/upstream.ts';

export type TargetName = 'submit' | 'jobs' | 'uploads' | 'all';

export async function createBackend(settings: Settings): Promise<Backend> {
  if (settings.backend === 'local') return new LocalBackend(settings.localDataDir);
  // Imported lazily: client-node costs ~0.4 s and ~130 MB, which the local backend never needs.
  const { KubernetesBackend } = await import('./backend/kubernetes.ts');
  try {
    return new KubernetesBackend({ ...settings });
  } catch (error) {
    // client-node throws on an unreadable or malformed kubeconfig: a configuration error, not a crash.
    throw new ConfigError(`cannot load the Kubernetes configuration${settings.kubeconfig ? ` from ${settings.kubeconfig}` : ''}: ${(error as Error).message}`);
  }
}

export async function createDeps(settings: Settings, overrides: { auth?: Authenticator; backend?: Backend } = {}): Promise<Deps> {
  return {
    settings,
    admin: loadAdminConfig(settings),
    auth:
      overrides.auth ??
      (settings.auth === 'none'
        ? new LocalUserAuth(settings.localUser)
        : new HubAuth({ hubApiUrl: settings.hubApiUrl, serviceName: settings.serviceName, cacheSeconds: settings.authCacheSeconds })),
    backend: overrides.backend ?? (await createBackend(settings)),
  };
}

/** The routes each deployable function serves; `all` is the one-process server. */
export function routesFor(target: TargetName, deps: Deps): RouteDefinition[] {
  const byTarget: Record<Exclude<TargetName, 'all'>, () => RouteDefinition[]> = {
    submit: () => [...submitRoutes(deps), ...upstreamSubmitRoutes(deps)],
    uploads: () => uploadRoutes(deps),
    jobs: () => [...jobRoutes(deps), ...upstreamJobRoutes(deps)],
  };
  if (target === 'all') return [...healthRoutes(deps), ...byTarget.submit(), ...byTarget.uploads(), ...byTarget.jobs()];
  return [...healthRoutes(deps), ...byTarget[target]()];
}

export function createHandler(target: TargetName, deps: Deps) {
  return createRouter(deps.settings.prefix, routesFor(target, deps));
}
