import { NotImplemented } from '../http/errors.ts';
import type { RouteDefinition } from '../http/router.ts';
import { jobDetail } from '../views.ts';
import type { Deps } from './deps.ts';
import { authenticated } from './native.ts';

/**
 * What upstream's API lacks for cronjobs: pausing and resuming a schedule, and a run outside it.
 * The upstream-compatible routes (lib/api/upstream.ts) keep submitting, listing and deleting them.
 */

function unsupported(deps: Deps): never {
  throw new NotImplemented(`cronjob schedules are not run by the ${deps.backend.kind} backend`);
}

export function cronJobActionRoutes(deps: Deps): RouteDefinition[] {
  const suspend = (suspended: boolean) =>
    authenticated(deps, async (ctx, user) => {
      if (!deps.backend.setCronJobSuspended) unsupported(deps);
      const cronJob = await deps.backend.setCronJobSuspended(user.namespace, ctx.params.name!, suspended);
      return { json: { name: cronJob.metadata?.name, suspended: Boolean(cronJob.spec?.suspend) } };
    });
  return [
    { method: 'POST', path: '/api/v1/cronjobs/:name/suspend', handler: suspend(true) },
    { method: 'POST', path: '/api/v1/cronjobs/:name/resume', handler: suspend(false) },
    {
      method: 'POST',
      path: '/api/v1/cronjobs/:name/run',
      handler: authenticated(deps, async (ctx, user) => {
        if (!deps.backend.runCronJob) unsupported(deps);
        return { status: 201, json: jobDetail(await deps.backend.runCronJob(user.namespace, ctx.params.name!), []) };
      }),
    },
  ];
}
