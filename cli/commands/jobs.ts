import type { JobDetail, JobSummary } from '../../lib/jobs/views.ts';
import { parseDuration } from '../args.ts';
import { outputOption, reconnectNotice, type Command } from '../command.ts';
import { UsageError } from '../errors.ts';
import { fields, humanDuration, parseOutputFormat, relativeAge, serialize, shellWords, table } from '../format.ts';
import { jobFinished, outcome, waitForJob } from '../wait.ts';
import { followLogs, printLogs } from '../logs.ts';

function stateLabel(job: JobSummary): string {
  return job.completions > 1 ? `${job.state} ${job.succeeded}/${job.completions}` : job.state;
}

export function jobTable(jobs: JobSummary[], now = new Date()): string {
  return table(
    ['NAME', 'STATE', 'CREATED', 'DURATION', 'IMAGE'],
    jobs.map((job) => [job.name, stateLabel(job), relativeAge(job.createdAt, now), humanDuration(job.durationSeconds), job.image ?? '-']),
  );
}

function timeWithAge(iso: string | undefined, now: Date): string | undefined {
  return iso ? `${iso} (${relativeAge(iso, now)})` : undefined;
}

/** The human view of `job show`: fields, then conditions and pods as small tables. */
export function jobDetailText(job: JobDetail, now = new Date()): string {
  const labels = Object.entries(job.labels ?? {})
    .filter(([key]) => !key.includes('kubernetes.io/') && !key.startsWith('kbatch.jupyter.org/'))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  let text = fields([
    ['Name', job.name],
    ['Namespace', job.namespace],
    ['State', job.state],
    ['Image', job.image],
    ['Command', shellWords(job.command)],
    ['Args', shellWords(job.args)],
    ['Created', timeWithAge(job.createdAt, now)],
    ['Started', timeWithAge(job.startedAt, now)],
    ['Finished', timeWithAge(job.finishedAt, now)],
    ['Duration', job.durationSeconds !== undefined ? humanDuration(job.durationSeconds) : undefined],
    ['Completions', `${job.succeeded}/${job.completions}${job.parallelism > 1 ? ` (parallelism ${job.parallelism})` : ''}`],
    ['Pod counts', `${job.active} active, ${job.succeeded} succeeded, ${job.failed} failed`],
    ['Labels', labels],
  ]);
  if (job.conditions?.length) {
    text += '\nConditions:\n' + indent(table(['TYPE', 'STATUS', 'REASON', 'MESSAGE'], job.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? ''])));
  }
  if (job.pods?.length) {
    const containers = (pod: JobDetail['pods'][number]) =>
      pod.containers
        .map((c) => `${c.name}: ${c.state}${c.reason ? ` (${c.reason}${c.exitCode !== undefined ? `, exit ${c.exitCode}` : ''})` : c.exitCode !== undefined ? ` (exit ${c.exitCode})` : ''}`)
        .join('; ');
    const indexed = job.pods.some((p) => p.completionIndex !== undefined);
    text +=
      '\nPods:\n' +
      indent(
        table(
          ['NAME', 'PHASE', ...(indexed ? ['INDEX'] : []), 'STARTED', 'CONTAINERS'],
          job.pods.map((p) => [p.name, p.phase, ...(indexed ? [p.completionIndex ?? '-'] : []), relativeAge(p.startedAt, now), containers(p)]),
        ),
      );
  }
  return text;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line ? `  ${line}` : line))
    .join('\n');
}

/** `--since 10m` (relative) or `--since 2024-05-01T12:00:00Z` (absolute), sent as RFC 3339. */
export function parseSince(raw: string, now = Date.now()): string {
  if (/^\d{4}-\d\d-\d\d/.test(raw)) {
    const time = Date.parse(raw);
    if (Number.isNaN(time)) throw new UsageError(`--since: "${raw}" is not a valid time`);
    return new Date(time).toISOString();
  }
  return new Date(now - parseDuration(raw, '--since') * 1000).toISOString();
}

const nameArgument = [{ name: 'NAME' }];

export const listCommand: Command = {
  kind: 'command',
  name: 'list',
  aliases: ['ls'],
  summary: 'List your jobs, newest first.',
  options: [
    { name: 'limit', type: 'string', value: 'N', help: 'at most N jobs per request (1-500, server default 50)' },
    { name: 'all', short: 'A', type: 'boolean', help: 'fetch every page, not just the first' },
    outputOption(['table', 'json', 'yaml', 'name'], 'table'),
  ],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'name'], 'table');
    const limit = ctx.args.integer('limit', 1, 500);
    const page = await ctx.api().listJobs({ limit, all: ctx.args.flag('all') });
    if (format === 'json' || format === 'yaml') ctx.out(serialize(page, format));
    else if (format === 'name') ctx.out(page.items.map((j) => `${j.name}\n`).join(''));
    else if (!page.items.length) ctx.err('No jobs.\n');
    else ctx.out(jobTable(page.items));
    if (page.continue && format !== 'json' && format !== 'yaml') ctx.err(`(more jobs: use --all, or --limit N)\n`);
    return 0;
  },
};

export const showCommand: Command = {
  kind: 'command',
  name: 'show',
  summary: 'Show the details of a job: state, conditions, pods.',
  positionals: nameArgument,
  options: [outputOption(['table', 'json', 'yaml'], 'table')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml'], 'table');
    const job = await ctx.api().getJob(ctx.args.positionals[0]!);
    ctx.out(format === 'table' ? jobDetailText(job) : serialize(job, format));
    return 0;
  },
};

export const deleteCommand: Command = {
  kind: 'command',
  name: 'delete',
  aliases: ['rm'],
  summary: 'Delete a job, stopping its pods.',
  positionals: nameArgument,
  options: [outputOption(['name', 'json', 'yaml'], 'name')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['name', 'json', 'yaml'], 'name');
    const name = ctx.args.positionals[0]!;
    const result = await ctx.api().deleteJob(name);
    ctx.out(format === 'name' ? `deleted job ${result.deleted ?? name}\n` : serialize(result, format));
    return 0;
  },
};

export const waitCommand: Command = {
  kind: 'command',
  name: 'wait',
  summary: 'Wait until a job finishes; exit 0 if it succeeded, 1 if it failed or the timeout passed.',
  positionals: nameArgument,
  options: [{ name: 'timeout', type: 'string', value: 'SECONDS', help: 'give up after this long (seconds, or 90s, 15m, 2h)' }],
  async run(ctx) {
    const raw = ctx.args.string('timeout');
    const timeoutSeconds = raw === undefined ? undefined : parseDuration(raw, '--timeout');
    const job = await waitForJob(ctx.api(), ctx.args.positionals[0]!, { timeoutSeconds, onReconnect: reconnectNotice(ctx, 'wait') });
    ctx.out(`${outcome(job)}\n`);
    return job.state === 'succeeded' ? 0 : 1;
  },
};

export const logsCommand: Command = {
  kind: 'command',
  name: 'logs',
  summary: 'Print the logs of a job (all of its pods, each line prefixed with its pod when there are several).',
  positionals: nameArgument,
  options: [
    { name: 'follow', short: 'f', aliases: ['stream'], type: 'boolean', help: 'keep streaming until the job ends; resumes by itself if the connection drops' },
    { name: 'pod', type: 'string', value: 'POD', help: 'only this pod of the job' },
    { name: 'since', type: 'string', value: 'TIME', help: 'only lines after TIME: a duration (10m, 2h) or an RFC 3339 time' },
    { name: 'tail', type: 'string', value: 'N', help: 'only the last N lines' },
    { name: 'timestamps', type: 'boolean', help: 'prefix each line with its time' },
  ],
  examples: ['kbatch job logs hello-x7k2p', 'kbatch job logs hello-x7k2p --follow', 'kbatch job logs array-4kq9z --pod array-4kq9z-2-abcde --since 10m'],
  async run(ctx) {
    const name = ctx.args.positionals[0]!;
    const since = ctx.args.string('since');
    const request = {
      follow: ctx.args.flag('follow'),
      pod: ctx.args.string('pod'),
      since: since === undefined ? undefined : parseSince(since),
      timestamps: ctx.args.flag('timestamps'),
      tail: ctx.args.integer('tail', 0, 1_000_000),
    };
    const api = ctx.api();
    if (!request.follow) {
      await printLogs(api, name, request, ctx.out);
      return 0;
    }
    await followLogs(api, name, request, ctx.out, { jobFinished: () => jobFinished(api, name), onReconnect: reconnectNotice(ctx, 'log stream') });
    return 0;
  },
};
