import type { V1Pod } from '@kubernetes/client-node';
import { labels } from '../../lib/k8s/names.ts';
import { podView, type PodView } from '../../lib/jobs/views.ts';
import { outputOption, type Command } from '../command.ts';
import { CliError } from '../errors.ts';
import { fields, parseOutputFormat, relativeAge, serialize, table } from '../format.ts';
import { jobLogsRun, parseSince } from './jobs.ts';

/** `kbatch pod ...`: upstream's pod commands (list, logs) plus the `show` it never had. */

interface PodRow extends PodView {
  job: string | undefined;
}

function podRow(pod: V1Pod): PodRow {
  return { ...podView(pod), job: pod.metadata?.labels?.[labels.jobName] ?? pod.metadata?.labels?.[labels.legacyJobName] };
}

function containerText(pod: PodView): string {
  return pod.containers
    .map(
      (c) =>
        `${c.name}: ${c.state}${c.reason ? ` (${c.reason}${c.exitCode !== undefined ? `, exit ${c.exitCode}` : ''})` : c.exitCode !== undefined ? ` (exit ${c.exitCode})` : ''}`,
    )
    .join('; ');
}

export function podTable(pods: PodRow[], now = new Date()): string {
  return table(
    ['NAME', 'JOB', 'PHASE', 'NODE', 'STARTED'],
    pods.map((p) => [p.name, p.job ?? '-', p.phase, p.node ?? '-', relativeAge(p.startedAt, now)]),
  );
}

export function podDetailText(pod: PodRow, now = new Date()): string {
  let text = fields([
    ['Name', pod.name],
    ['Job', pod.job],
    ['Phase', pod.phase],
    ['Node', pod.node],
    ['Started', pod.startedAt ? `${pod.startedAt} (${relativeAge(pod.startedAt, now)})` : undefined],
    ['Index', pod.completionIndex],
  ]);
  if (pod.containers.length) {
    text +=
      '\nContainers:\n' +
      table(
        ['NAME', 'STATE', 'REASON', 'EXIT', 'MESSAGE'],
        pod.containers.map((c) => [c.name, c.state, c.reason ?? '', c.exitCode === undefined ? '' : String(c.exitCode), c.message ?? '']),
      ).replace(/^/gm, '  ');
  }
  return text;
}

const podArgument = [{ name: 'POD' }];

export const podListCommand: Command = {
  kind: 'command',
  name: 'list',
  aliases: ['ls'],
  summary: 'List the pods of your jobs (or of one job).',
  options: [
    { name: 'job-name', aliases: ['job'], type: 'string', value: 'NAME', help: 'only the pods of this job' },
    outputOption(['table', 'json', 'yaml', 'name', 'k8s'], 'table'),
  ],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'name', 'k8s'], 'table');
    const pods = await ctx.api().listPods(ctx.args.string('job-name'));
    if (format === 'k8s') ctx.out(serialize({ apiVersion: 'v1', kind: 'PodList', items: pods }, 'json'));
    else if (format === 'json' || format === 'yaml') ctx.out(serialize({ items: pods.map(podRow) }, format));
    else if (format === 'name') ctx.out(pods.map((p) => `${p.metadata?.name}\n`).join(''));
    else if (!pods.length) ctx.err('No pods.\n');
    else ctx.out(podTable(pods.map(podRow)));
    return 0;
  },
};

export const podShowCommand: Command = {
  kind: 'command',
  name: 'show',
  aliases: ['describe'],
  summary: 'Show one pod: its job, phase, node and containers (with exit codes).',
  positionals: podArgument,
  options: [outputOption(['table', 'json', 'yaml', 'k8s'], 'table')],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'k8s'], 'table');
    const pod = await ctx.api().getPod(ctx.args.positionals[0]!);
    if (format === 'k8s') ctx.out(serialize(pod, 'json'));
    else ctx.out(format === 'table' ? podDetailText(podRow(pod)) : serialize(podRow(pod), format));
    return 0;
  },
};

export const podLogsCommand: Command = {
  kind: 'command',
  name: 'logs',
  summary: 'Print the logs of one pod.',
  positionals: podArgument,
  options: [
    {
      name: 'follow',
      short: 'f',
      aliases: ['stream'],
      type: 'boolean',
      help: 'keep streaming until the pod ends; resumes by itself if the connection drops',
    },
    { name: 'since', type: 'string', value: 'TIME', help: 'only lines after TIME: a duration (10m, 2h) or an RFC 3339 time' },
    { name: 'tail', type: 'string', value: 'N', help: 'only the last N lines' },
    { name: 'timestamps', type: 'boolean', help: 'prefix each line with its time' },
  ],
  examples: ['kbatch pod logs hello-x7k2p-abcde', 'kbatch pod logs hello-x7k2p-abcde --follow'],
  async run(ctx) {
    const podName = ctx.args.positionals[0]!;
    // A pod's log is read through its job's log API, which knows how to follow and resume.
    const pod = podRow(await ctx.api().getPod(podName));
    if (!pod.job) throw new CliError(`pod ${podName} belongs to no job`);
    const since = ctx.args.string('since');
    return jobLogsRun(
      ctx,
      pod.job,
      {
        follow: ctx.args.flag('follow'),
        pod: podName,
        since: since === undefined ? undefined : parseSince(since),
        timestamps: ctx.args.flag('timestamps'),
        tail: ctx.args.integer('tail', 0, 1_000_000),
      },
      `kbatch pod logs ${podName} --follow`,
    );
  },
};
