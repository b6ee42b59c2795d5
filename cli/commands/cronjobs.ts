import type { V1CronJob } from '@kubernetes/client-node';
import type { JobSpec } from '../../lib/jobs/spec.ts';
import type { CronJobSubmission, Profile } from '../api.ts';
import { outputOption, type Command } from '../command.ts';
import { UsageError } from '../errors.ts';
import { fields, parseOutputFormat, relativeAge, serialize, shellWords, table } from '../format.ts';
import { buildSubmitPlan, readJobFile } from '../job-spec.ts';
import { collectCodeEntries } from '../upload.ts';
import { writeZip } from '../zip.ts';
import { watchJob } from '../watch.ts';
import { maskedEnv, submitCommand } from './submit.ts';

/**
 * `kbatch cronjob ...`: jobs on a schedule, through the upstream-compatible API (the only one the
 * server has for them). Like upstream's CLI, `submit` builds the CronJob itself and applies a
 * profile's image and resources here.
 */

type Quantities = Record<string, string>;

function merged(profile: Profile['resources'] | undefined, own: JobSpec['resources'], key: 'requests' | 'limits'): Quantities | undefined {
  const values = { ...Object.fromEntries(Object.entries(profile?.[key] ?? {}).map(([k, v]) => [k, String(v)])), ...(own?.[key] ?? {}) };
  return Object.keys(values).length ? values : undefined;
}

/** The CronJob manifest upstream's `make_cronjob` builds, from the same spec `job submit` sends. */
export function cronJobManifest(spec: JobSpec, schedule: string, profile?: Profile): Record<string, unknown> {
  const image = spec.image ?? profile?.image;
  if (!image) throw new UsageError('missing --image (the profile sets none)');
  const container = {
    name: 'job',
    image,
    command: spec.command,
    args: spec.args,
    env: Object.entries(spec.env ?? {}).map(([name, value]) => ({ name, value })),
    workingDir: '/code',
    resources: {
      requests: merged(profile?.resources, spec.resources, 'requests'),
      limits: merged(profile?.resources, spec.resources, 'limits'),
    },
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: spec.name, labels: spec.labels },
    spec: {
      schedule,
      jobTemplate: {
        spec: {
          backoffLimit: spec.backoffLimit ?? 0,
          ttlSecondsAfterFinished: spec.ttlSecondsAfterFinished,
          parallelism: spec.parallelism,
          completions: spec.completions,
          activeDeadlineSeconds: spec.activeDeadlineSeconds,
          template: {
            spec: {
              restartPolicy: 'Never',
              containers: [container],
              tolerations: spec.tolerations,
              affinity: spec.nodeAffinityRequired
                ? { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: spec.nodeAffinityRequired } } }
                : undefined,
            },
          },
        },
      },
    },
  };
}

interface CronJobRow {
  name: string;
  schedule: string;
  suspended: boolean;
  active: string[];
  lastScheduled: string | undefined;
  lastSucceeded: string | undefined;
  createdAt: string | undefined;
  image: string | undefined;
  command: string[] | undefined;
  args: string[] | undefined;
  envKeys: string[];
}

function iso(value: unknown): string | undefined {
  return value ? new Date(value as string).toISOString() : undefined;
}

export function cronJobRow(cronJob: V1CronJob): CronJobRow {
  const container = cronJob.spec?.jobTemplate.spec?.template.spec?.containers[0];
  return {
    name: cronJob.metadata?.name ?? '',
    schedule: cronJob.spec?.schedule ?? '',
    suspended: Boolean(cronJob.spec?.suspend),
    active: (cronJob.status?.active ?? []).map((ref) => ref.name ?? ''),
    lastScheduled: iso(cronJob.status?.lastScheduleTime),
    lastSucceeded: iso(cronJob.status?.lastSuccessfulTime),
    createdAt: iso(cronJob.metadata?.creationTimestamp),
    image: container?.image,
    command: container?.command,
    args: container?.args,
    envKeys: (container?.env ?? []).map((e) => e.name),
  };
}

export function cronJobTable(rows: CronJobRow[], now = new Date()): string {
  return table(
    ['NAME', 'SCHEDULE', 'SUSPENDED', 'ACTIVE', 'LAST RUN', 'CREATED', 'IMAGE'],
    rows.map((r) => [
      r.name,
      r.schedule,
      r.suspended ? 'yes' : 'no',
      String(r.active.length),
      relativeAge(r.lastScheduled, now),
      relativeAge(r.createdAt, now),
      r.image ?? '-',
    ]),
  );
}

export function cronJobDetailText(row: CronJobRow, now = new Date()): string {
  const when = (value: string | undefined) => (value ? `${value} (${relativeAge(value, now)})` : undefined);
  return fields([
    ['Name', row.name],
    ['Schedule', row.schedule],
    ['Suspended', row.suspended ? 'yes' : 'no'],
    ['Image', row.image],
    ['Command', shellWords(row.command)],
    ['Args', shellWords(row.args)],
    ['Env', row.envKeys.join(', ')],
    ['Created', when(row.createdAt)],
    ['Last run', when(row.lastScheduled)],
    ['Last success', when(row.lastSucceeded)],
    ['Running jobs', row.active.join(', ')],
  ]);
}

const nameArgument = [{ name: 'NAME' }];

export const cronJobSubmitCommand: Command = {
  kind: 'command',
  name: 'submit',
  summary: 'Submit a job that runs on a schedule (until you delete it).',
  description:
    'Submit a job that runs on a cron schedule, until it is deleted. Takes the options of job submit\n' +
    '(except --wait/--follow) plus --schedule; a profile contributes its image and resources.',
  options: [
    { name: 'schedule', type: 'string', value: 'CRON', help: 'cron expression, e.g. "0 22 * * 1-5", or @hourly, @daily...' },
    ...submitCommand.options.filter((o) => !['wait', 'follow', 'output'].includes(o.name)),
    outputOption(['name', 'json', 'yaml', 'k8s'], 'name'),
  ],
  examples: [`kbatch cronjob submit -n nightly --image python:3.12 --schedule '0 2 * * *' --code job.py --command '["python", "job.py"]'`],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['name', 'json', 'yaml', 'k8s'], 'name');
    const fileName = ctx.args.string('filename');
    const file = fileName ? readJobFile(fileName, ['schedule']) : {};
    const schedule = ctx.args.string('schedule') ?? file.schedule;
    if (typeof schedule !== 'string' || !schedule.trim())
      throw new UsageError('missing --schedule (or "schedule" in the --filename YAML)', 'e.g. --schedule "0 22 * * 1-5"');
    delete file.schedule;
    const plan = buildSubmitPlan(ctx.args, file);
    const api = ctx.api();
    let profile: Profile | undefined;
    if (plan.spec.profile) {
      const profiles = await api.profiles();
      profile = profiles[plan.spec.profile];
      if (!profile)
        throw new UsageError(`unknown profile "${plan.spec.profile}"`, `available: ${Object.keys(profiles).join(', ') || 'none'}`);
    }
    const submission: CronJobSubmission = { job: cronJobManifest(plan.spec, schedule.trim(), profile) };
    if (plan.code) submission.code = { binary_data: { code: writeZip(collectCodeEntries(plan.code).entries).toString('base64') } };
    const cronJob = await api.submitCronJob(submission);
    const row = cronJobRow(cronJob);
    if (format === 'name') ctx.out(`${row.name}\n`);
    else if (format === 'k8s') ctx.out(serialize(cronJob, 'json'));
    else
      ctx.out(
        serialize(
          {
            name: row.name,
            schedule: row.schedule,
            image: row.image,
            command: row.command ?? null,
            args: row.args ?? null,
            env: maskedEnv(plan.spec.env),
            code: plan.code ?? null,
          },
          format,
        ),
      );
    return 0;
  },
};

export const cronJobListCommand: Command = {
  kind: 'command',
  name: 'list',
  aliases: ['ls'],
  summary: 'List your cronjobs.',
  options: [outputOption(['table', 'json', 'yaml', 'name'], 'table')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'name'], 'table');
    const rows = (await ctx.api().listCronJobs()).map(cronJobRow);
    if (format === 'json' || format === 'yaml') ctx.out(serialize({ items: rows }, format));
    else if (format === 'name') ctx.out(rows.map((r) => `${r.name}\n`).join(''));
    else if (!rows.length) ctx.err('No cronjobs.\n');
    else ctx.out(cronJobTable(rows));
    return 0;
  },
};

export const cronJobShowCommand: Command = {
  kind: 'command',
  name: 'show',
  aliases: ['describe'],
  summary: 'Show a cronjob: schedule, whether it is suspended, its last run and running jobs.',
  positionals: nameArgument,
  options: [outputOption(['table', 'json', 'yaml', 'k8s'], 'table')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'k8s'], 'table');
    const cronJob = await ctx.api().getCronJob(ctx.args.positionals[0]!);
    if (format === 'k8s') ctx.out(serialize(cronJob, 'json'));
    else ctx.out(format === 'table' ? cronJobDetailText(cronJobRow(cronJob)) : serialize(cronJobRow(cronJob), format));
    return 0;
  },
};

export const cronJobDeleteCommand: Command = {
  kind: 'command',
  name: 'delete',
  aliases: ['rm'],
  summary: 'Delete a cronjob, stopping its running jobs and pods.',
  positionals: nameArgument,
  options: [],
  async run(ctx) {
    const name = ctx.args.positionals[0]!;
    await ctx.api().deleteCronJob(name);
    ctx.out(`deleted cronjob ${name}\n`);
    return 0;
  },
};

function suspendCommand(name: 'suspend' | 'resume'): Command {
  const suspended = name === 'suspend';
  return {
    kind: 'command',
    name,
    summary: suspended ? 'Pause a cronjob: no new runs until resumed (running jobs go on).' : "Resume a suspended cronjob's schedule.",
    positionals: nameArgument,
    options: [],
    async run(ctx) {
      const cronJob = ctx.args.positionals[0]!;
      const result = await ctx.api().setCronJobSuspended(cronJob, suspended);
      ctx.out(`cronjob ${result.name ?? cronJob} ${result.suspended ? 'suspended' : 'resumed'}\n`);
      return 0;
    },
  };
}

export const cronJobSuspendCommand = suspendCommand('suspend');
export const cronJobResumeCommand = suspendCommand('resume');

export const cronJobRunCommand: Command = {
  kind: 'command',
  name: 'run-now',
  aliases: ['run', 'trigger'],
  summary: 'Run a cronjob now, outside its schedule; prints the job it started.',
  positionals: nameArgument,
  options: [{ name: 'wait', type: 'boolean', help: 'wait until that job finishes; exit 0 if it succeeded, else 1' }],
  async run(ctx) {
    const api = ctx.api();
    const job = await api.runCronJob(ctx.args.positionals[0]!);
    ctx.out(`${job.name}\n`);
    return ctx.args.flag('wait') ? watchJob(ctx, api, job.name, { connected: true }) : 0;
  },
};
