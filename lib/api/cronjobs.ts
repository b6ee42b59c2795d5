import { NotImplemented } from '../http/errors.ts';
import { JobDetailSchema } from '../jobs/schemas.ts';
import type { RouteDefinition } from '../http/router.ts';
import { jobDetail } from '../jobs/views.ts';
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
    {
      method: 'POST',
      path: '/api/v1/cronjobs/:name/suspend',
      doc: { summary: 'Pause a cronjob: no runs until resumed', auth: true, responses: { 200: '{name, suspended: true}' }, errors: [501] },
      handler: suspend(true),
    },
    {
      method: 'POST',
      path: '/api/v1/cronjobs/:name/resume',
      doc: { summary: 'Resume a paused cronjob', auth: true, responses: { 200: '{name, suspended: false}' }, errors: [501] },
      handler: suspend(false),
    },
    {
      method: 'POST',
      path: '/api/v1/cronjobs/:name/run',
      doc: {
        summary: 'Run a cronjob now, outside its schedule (a Job from its template, as kubectl create job --from does)',
        auth: true,
        responses: { 201: { description: 'JobDetail', schema: JobDetailSchema } },
        errors: [501],
      },
      handler: authenticated(deps, async (ctx, user) => {
        if (!deps.backend.runCronJob) unsupported(deps);
        return { status: 201, json: jobDetail(await deps.backend.runCronJob(user.namespace, ctx.params.name!), []) };
      }),
    },
  ];
}
