import type { JobDetail, JobSummary } from '../../lib/jobs/views.ts';
import { parseDuration } from '../args.ts';
import { outputOption, reconnectNotice, type Command, type CommandContext, type Positional } from '../command.ts';
import type { DeleteResult, KbatchApi } from '../api.ts';
import { ApiError, CliError, UsageError } from '../errors.ts';
import { fields, humanDuration, parseOutputFormat, relativeAge, serialize, shellWords, table } from '../format.ts';
import { keepsRunning, onInterrupt } from '../interrupt.ts';
import { followLogs, printLogs } from '../logs.ts';
import { filterJobs, parseSelector, parseStates } from '../select.ts';
import { jobFinished } from '../wait.ts';
import { watchJob } from '../watch.ts';

function stateLabel(job: JobSummary): string {
  return job.completions > 1 ? `${job.state} ${job.succeeded}/${job.completions}` : job.state;
}

export function jobTable(jobs: JobSummary[], now = new Date(), withOwner = false): string {
  return table(
    [...(withOwner ? ['OWNER'] : []), 'NAME', 'STATE', 'CREATED', 'DURATION', 'IMAGE'],
    jobs.map((job) => [
      ...(withOwner ? [job.user ?? '-'] : []),
      job.name,
      stateLabel(job),
      relativeAge(job.createdAt, now),
      humanDuration(job.durationSeconds),
      job.image ?? '-',
    ]),
  );
}

function timeWithAge(iso: string | undefined, now: Date): string | undefined {
  return iso ? `${iso} (${relativeAge(iso, now)})` : undefined;
}

function quantities(values: Record<string, string> | undefined): string | undefined {
  const entries = Object.entries(values ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(', ') : undefined;
}

const imageProblems = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull']);

/**
 * One line on why a pending job is not running, from what Kubernetes says: an image that cannot be
 * pulled, a pod no node can take, a pod that could not be created (quota), else where it stands.
 */
export function whyPending(job: JobDetail): string | undefined {
  if (job.state === 'suspended') return 'the job is suspended';
  if (job.state !== 'pending') return undefined;
  const latest = (reasons: string[]) => [...(job.events ?? [])].reverse().find((e) => reasons.includes(e.reason));
  for (const pod of job.pods) {
    const stuck = pod.containers.find(
      (c) => c.state === 'waiting' && c.reason && (imageProblems.has(c.reason) || c.reason === 'CreateContainerConfigError'),
    );
    if (stuck) {
      const pulled = imageProblems.has(stuck.reason!) ? latest(['Failed']) : undefined;
      return `${stuck.reason}: ${pulled?.message ?? stuck.message ?? `container ${stuck.name} of pod ${pod.name} cannot start`}`;
    }
  }
  const unschedulable = latest(['FailedScheduling']);
  if (unschedulable && job.pods.some((p) => p.phase === 'Pending' && !p.node)) return `no node can run it yet: ${unschedulable.message}`;
  const failedCreate = latest(['FailedCreate']);
  if (!job.pods.length && failedCreate) return `its pod cannot be created: ${failedCreate.message}`;
  if (!job.pods.length) return 'no pod yet; the Job controller has not created one';
  const pending = job.pods.find((p) => p.phase === 'Pending');
  if (pending && !pending.node) return `pod ${pending.name} is waiting for a node`;
  const waiting = pending?.containers.find((c) => c.state === 'waiting' && c.reason);
  if (pending && waiting) return `pod ${pending.name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
  return pending ? `pod ${pending.name} is starting on ${pending.node}` : undefined;
}

/** The human view of `job show`: fields, then conditions, pods and recent events as small tables. */
export function jobDetailText(job: JobDetail, now = new Date()): string {
  const labels = Object.entries(job.labels ?? {})
    .filter(([key]) => !key.includes('kubernetes.io/') && !key.startsWith('kbatch.jupyter.org/'))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  let text = fields([
    ['Name', job.name],
    ['Namespace', job.namespace],
    ['State', job.state],
    ['Why', whyPending(job)],
    ['Image', job.image],
    // kbatch's own papermill entry is a long script; the notebook lines below say what it runs.
    ['Command', job.notebook?.source === 'spec' ? 'papermill (kbatch notebook entry)' : shellWords(job.command)],
    ['Args', shellWords(job.args)],
    ['Notebook', job.notebook?.notebook],
    ['Parameters', job.notebook && Object.keys(job.notebook.parameters).length ? parameterText(job.notebook.parameters) : undefined],
    [
      'Sweep',
      job.notebook?.sweep
        ? Object.entries(job.notebook.sweep)
            .map(([name, values]) => `${name} in ${JSON.stringify(values)}`)
            .join(', ')
        : undefined,
    ],
    ['Output', job.notebook && !job.notebook.sweep ? job.notebook.runs[0]?.output : undefined],
    ['Profile', job.profile],
    ['Requests', quantities(job.resources?.requests)],
    ['Limits', quantities(job.resources?.limits)],
    // Names only: the values live in a Secret and are never shown.
    ['Env', job.envKeys?.length ? job.envKeys.join(', ') : undefined],
    ['Created', timeWithAge(job.createdAt, now)],
    ['Started', timeWithAge(job.startedAt, now)],
    ['Finished', timeWithAge(job.finishedAt, now)],
    ['Duration', job.durationSeconds !== undefined ? humanDuration(job.durationSeconds) : undefined],
    ['Completions', `${job.succeeded}/${job.completions}${job.parallelism > 1 ? ` (parallelism ${job.parallelism})` : ''}`],
    ['Pod counts', `${job.active} active, ${job.succeeded} succeeded, ${job.failed} failed`],
    ['Labels', labels],
  ]);
  if (job.notebook?.sweep) {
    // The first 100 indexes; -o json has them all.
    const runs = job.notebook.runs.slice(0, 100).map((run) => [String(run.index ?? 0), parameterText(run.parameters), run.output]);
    text += '\nRuns:\n' + indent(table(['INDEX', 'PARAMETERS', 'OUTPUT'], runs));
    if (job.notebook.runs.length > runs.length) text += `  ... ${job.notebook.runs.length - runs.length} more (-o json shows all)\n`;
  }
  if (job.conditions?.length) {
    text +=
      '\nConditions:\n' +
      indent(
        table(
          ['TYPE', 'STATUS', 'REASON', 'MESSAGE'],
          job.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '']),
        ),
      );
  }
  if (job.pods?.length) {
    const containers = (pod: JobDetail['pods'][number]) =>
      pod.containers
        .map(
          (c) =>
            `${c.name}: ${c.state}${c.reason ? ` (${c.reason}${c.exitCode !== undefined ? `, exit ${c.exitCode}` : ''})` : c.exitCode !== undefined ? ` (exit ${c.exitCode})` : ''}`,
        )
        .join('; ');
    const indexed = job.pods.some((p) => p.completionIndex !== undefined);
    text +=
      '\nPods:\n' +
      indent(
        table(
          ['NAME', 'PHASE', ...(indexed ? ['INDEX'] : []), 'STARTED', 'CONTAINERS'],
          job.pods.map((p) => [
            p.name,
            p.phase,
            ...(indexed ? [p.completionIndex ?? '-'] : []),
            relativeAge(p.startedAt, now),
            containers(p),
          ]),
        ),
      );
  }
  if (job.events?.length) {
    text +=
      '\nEvents:\n' +
      indent(
        table(
          ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'],
          job.events
            .slice(-10)
            .map((e) => [relativeAge(e.lastSeen, now), e.type, e.reason, e.object, `${e.message}${e.count > 1 ? ` (x${e.count})` : ''}`]),
        ),
      );
  }
  return text;
}

/** `alpha=0.5, seed=1, label="a b"`: each value as JSON, so types show (1 vs "1"). */
function parameterText(parameters: Record<string, unknown>): string {
  return Object.entries(parameters)
    .map(([name, value]) => `${name}=${JSON.stringify(value)}`)
    .join(', ');
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

/** `job show NAME` or, as the founding usage writes it, `jobs show --job-id=NAME`. */
const nameArgument: Positional[] = [{ name: 'NAME', flag: 'job-id' }];
const jobIdOption = { name: 'job-id', type: 'string' as const, value: 'NAME', help: 'the job, instead of the NAME argument' };

const listFormats = ['table', 'json', 'yaml', 'name'] as const;

/** The rows of a watch that changed since the last poll: new jobs, new states or counts, and jobs gone. */
export function watchChanges(before: Map<string, JobSummary>, now: JobSummary[]): { changed: JobSummary[]; gone: string[] } {
  const key = (job: JobSummary) => `${job.state}/${job.succeeded}/${job.failed}/${job.active}`;
  const changed = now.filter((job) => !before.has(job.name) || key(before.get(job.name)!) !== key(job));
  const present = new Set(now.map((job) => job.name));
  return { changed, gone: [...before.keys()].filter((name) => !present.has(name)) };
}

async function watchList(
  ctx: CommandContext,
  load: () => Promise<JobSummary[]>,
  first: JobSummary[],
  intervalMs: number,
  namesOnly: boolean,
): Promise<number> {
  const release = onInterrupt('kbatch: stopped watching the job list; the jobs keep running\n');
  try {
    let seen = new Map(first.map((job) => [job.name, job]));
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
      const jobs = await load();
      const { changed, gone } = watchChanges(seen, jobs);
      // Like kubectl get -w: one line per change, no header again, the same columns.
      if (namesOnly) for (const job of changed) ctx.out(`${job.name}\n`);
      else for (const line of jobTable(changed).split('\n').slice(1)) if (line) ctx.out(`${line}\n`);
      for (const name of gone) ctx.out(`${name}  deleted\n`);
      seen = new Map(jobs.map((job) => [job.name, job]));
    }
  } finally {
    release();
  }
}

export const listCommand: Command = {
  kind: 'command',
  name: 'list',
  aliases: ['ls'],
  summary: 'List your jobs, newest first.',
  description:
    'List your jobs, newest first: every page, unless --limit asks for fewer.\nFilter by state (--state running) and by label (-l team=ml); --watch prints each change as it happens.',
  options: [
    {
      name: 'state',
      short: 's',
      aliases: ['status'],
      type: 'string',
      repeatable: true,
      value: 'STATE',
      help: 'only jobs in this state: pending, running, succeeded, failed, suspended (comma-separated for several)',
    },
    {
      name: 'selector',
      short: 'l',
      type: 'string',
      repeatable: true,
      value: 'KEY=VALUE',
      help: 'only jobs with these labels (key=value, key!=value, key, !key; comma-separated)',
    },
    { name: 'limit', type: 'string', value: 'N', help: 'only the newest N jobs' },
    { name: 'all-pages', type: 'boolean', help: 'fetch every page (the default unless --limit is given)' },
    { name: 'all-namespaces', short: 'A', type: 'boolean', help: 'not available: kbatch lists your own jobs only' },
    {
      name: 'watch',
      short: 'w',
      type: 'boolean',
      help: 'after the list, print each job that appears, changes or goes away (Ctrl-C to stop)',
    },
    { name: 'all-users', type: 'boolean', help: "every user's jobs, with their owner (needs the Hub admin scope, see the README)" },
    outputOption([...listFormats], 'table'),
  ],
  examples: ['kbatch job list --state running', 'kbatch job list -l team=ml -o name', 'kbatch job list --watch'],
  async run(ctx) {
    if (ctx.args.flag('all-namespaces')) {
      throw new UsageError(
        '-A/--all-namespaces is not available: kbatch shows your own jobs only (and -A no longer means all pages)',
        'every page is fetched by default; --all-pages says so explicitly',
      );
    }
    const format = parseOutputFormat(ctx.args.string('output'), [...listFormats], 'table');
    const limit = ctx.args.integer('limit', 1, 500);
    const states = parseStates(ctx.args.strings('state'));
    const selector = parseSelector(ctx.args.strings('selector'));
    const filtering = Boolean(states || selector.length);
    // With a filter the matches may be on any page; without one, --limit is one page of that size.
    const allPages = ctx.args.flag('all-pages') || limit === undefined || filtering;
    const allUsers = ctx.args.flag('all-users');
    const api = ctx.api();
    const load = async () => {
      const page = await api.listJobs({ limit: allPages ? undefined : limit, all: allPages, allUsers });
      const items = filterJobs(page.items, { states, selector });
      return {
        items: limit !== undefined ? items.slice(0, limit) : items,
        more: Boolean(page.continue) || (limit !== undefined && items.length > limit),
      };
    };
    const { items, more } = await load();
    if (format === 'json' || format === 'yaml') ctx.out(serialize({ items, continue: null }, format));
    else if (format === 'name') ctx.out(items.map((j) => `${j.name}\n`).join(''));
    else if (!items.length) ctx.err(filtering ? 'No jobs match.\n' : 'No jobs.\n');
    else ctx.out(jobTable(items, new Date(), allUsers));
    if (more && format !== 'json' && format !== 'yaml') ctx.err(`(more jobs: drop --limit to see them all)\n`);
    if (!ctx.args.flag('watch')) return 0;
    if (format !== 'table' && format !== 'name') throw new UsageError('--watch prints table rows; use -o table or -o name');
    return watchList(ctx, async () => (await load()).items, items, Number(ctx.io.env.KBATCH_WATCH_INTERVAL_MS) || 2000, format === 'name');
  },
};

export const showCommand: Command = {
  kind: 'command',
  name: 'show',
  aliases: ['describe'],
  summary: 'Show the details of a job: state and why it is pending, resources, env names, pods, events.',
  positionals: nameArgument,
  options: [jobIdOption, outputOption(['table', 'json', 'yaml', 'k8s'], 'table')],
  examples: ['kbatch job show hello-x7k2p', 'kbatch jobs show --job-id=hello-x7k2p', 'kbatch job show hello-x7k2p -o k8s'],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['table', 'json', 'yaml', 'k8s'], 'table');
    const name = ctx.args.positionals[0]!;
    if (format === 'k8s') {
      ctx.out(serialize(await ctx.api().getJobManifest(name), 'json'));
      return 0;
    }
    const job = await ctx.api().getJob(name);
    ctx.out(format === 'table' ? jobDetailText(job) : serialize(job, format));
    return 0;
  },
};

/** Names chosen by `--all` or `-l`, after a confirmation unless `--yes`. */
async function chooseForDelete(ctx: CommandContext): Promise<string[]> {
  const names = ctx.args.positionals;
  const all = ctx.args.flag('all');
  const selector = parseSelector(ctx.args.strings('selector'));
  if (!names.length && !all && !selector.length)
    throw new UsageError('missing NAME (or -l KEY=VALUE, or --all)', 'usage: kbatch job delete NAME... | -l KEY=VALUE | --all [--yes]');
  if (names.length && (all || selector.length)) throw new UsageError('give job names, or -l/--all, not both');
  if (names.length) return names;
  const { items } = await ctx.api().listJobs({ all: true });
  const chosen = filterJobs(items, { selector }).map((job) => job.name);
  if (!chosen.length || ctx.args.flag('yes')) return chosen;
  const listing = `${chosen.length} job${chosen.length === 1 ? '' : 's'} (${chosen.slice(0, 5).join(', ')}${chosen.length > 5 ? ', ...' : ''})`;
  if (!ctx.io.stdin?.isTTY) throw new UsageError(`refusing to delete ${listing} without confirmation`, 'pass --yes to confirm');
  const answer = await ctx.io.stdin.question(`Delete ${listing}${ctx.args.flag('outputs') ? ' and their outputs' : ''}? [y/N] `);
  if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('nothing deleted');
  return chosen;
}

/**
 * Deletes a job (and its outputs with `outputs`). Outputs outlive the Job, so with `outputs` a job
 * already gone (deleted, or removed after its TTL) may still have outputs to delete.
 */
async function deleteOne(api: KbatchApi, name: string, outputs: boolean): Promise<DeleteResult & { outputsOnly?: boolean }> {
  try {
    const result = await api.deleteJob(name, { outputs });
    // The server says `job: null` when only the outputs were left to delete.
    return outputs && result.job === null ? { ...result, outputsOnly: true } : result;
  } catch (error) {
    // A server that 404s the Job alone: ask for the outputs by themselves.
    if (!outputs || !(error instanceof ApiError) || error.reason !== 'NotFound') throw error;
    try {
      await api.deleteOutputs(name);
    } catch {
      throw error;
    }
    return { deleted: name, outputsOnly: true };
  }
}

export const deleteCommand: Command = {
  kind: 'command',
  name: 'delete',
  aliases: ['rm'],
  summary: 'Delete jobs, stopping their pods.',
  description:
    "Delete jobs by name, by label (-l) or all of them (--all), stopping their pods.\n-l and --all ask for confirmation on a terminal; --yes skips it (and is required when not on a terminal).\nA job's outputs stay after it is deleted (kbatch job outputs NAME still downloads them); --outputs deletes them too.",
  positionals: [{ name: 'NAME', optional: true, variadic: true, flag: 'job-id' }],
  options: [
    jobIdOption,
    { name: 'selector', short: 'l', type: 'string', repeatable: true, value: 'KEY=VALUE', help: 'delete the jobs with these labels' },
    { name: 'all', type: 'boolean', help: 'delete all of your jobs' },
    { name: 'yes', short: 'y', type: 'boolean', help: 'do not ask for confirmation' },
    { name: 'outputs', type: 'boolean', help: "also delete the jobs' outputs (otherwise they stay after the job is deleted)" },
    outputOption(['name', 'json', 'yaml'], 'name'),
  ],
  examples: [
    'kbatch job delete hello-x7k2p',
    'kbatch job delete hello-x7k2p --outputs',
    'kbatch job delete a-1x2y3 b-4z5w6',
    'kbatch job delete -l team=ml --yes',
    'kbatch job delete --all',
  ],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['name', 'json', 'yaml'], 'name');
    const names = await chooseForDelete(ctx);
    if (!names.length) {
      ctx.err('No jobs match; nothing deleted.\n');
      return 0;
    }
    const api = ctx.api();
    const outputs = ctx.args.flag('outputs');
    const results: { deleted?: string }[] = [];
    let failures = 0;
    // One failure (a job already gone) does not stop the others; the exit code reports it.
    for (const name of names) {
      try {
        const result = await deleteOne(api, name, outputs);
        results.push(result);
        if (format === 'name')
          ctx.out(
            result.outputsOnly
              ? `deleted the outputs of job ${name} (the job itself was already gone)\n`
              : `deleted job ${result.deleted ?? name}${outputs ? ' and its outputs' : ''}\n`,
          );
      } catch (error) {
        if (names.length === 1) throw error;
        failures++;
        ctx.err(`kbatch: job ${name}: ${(error as Error).message}\n`);
      }
    }
    if (format !== 'name') ctx.out(serialize(names.length === 1 ? results[0] : results, format));
    return failures ? 1 : 0;
  },
};

export const waitCommand: Command = {
  kind: 'command',
  name: 'wait',
  summary: 'Wait until a job finishes, with progress on a terminal; exit 0 if it succeeded, 1 if it failed or the timeout passed.',
  positionals: nameArgument,
  options: [jobIdOption, { name: 'timeout', type: 'string', value: 'SECONDS', help: 'give up after this long (seconds, or 90s, 15m, 2h)' }],
  async run(ctx) {
    const raw = ctx.args.string('timeout');
    const timeoutSeconds = raw === undefined ? undefined : parseDuration(raw, '--timeout');
    return watchJob(ctx, ctx.api(), ctx.args.positionals[0]!, { timeoutSeconds });
  },
};

export const logsCommand: Command = {
  kind: 'command',
  name: 'logs',
  summary: 'Print the logs of a job (all of its pods, each line prefixed with its pod when there are several).',
  positionals: nameArgument,
  options: [
    jobIdOption,
    {
      name: 'follow',
      short: 'f',
      aliases: ['stream'],
      type: 'boolean',
      help: 'keep streaming until the job ends; resumes by itself if the connection drops',
    },
    { name: 'pod', type: 'string', value: 'POD', help: 'only this pod of the job' },
    { name: 'since', type: 'string', value: 'TIME', help: 'only lines after TIME: a duration (10m, 2h) or an RFC 3339 time' },
    { name: 'tail', type: 'string', value: 'N', help: 'only the last N lines' },
    { name: 'timestamps', type: 'boolean', help: 'prefix each line with its time' },
  ],
  examples: [
    'kbatch job logs hello-x7k2p',
    'kbatch job logs hello-x7k2p --follow',
    'kbatch job logs array-4kq9z --pod array-4kq9z-2-abcde --since 10m',
  ],
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
    return jobLogsRun(ctx, name, request);
  },
};

/** Shared by `job logs` and `pod logs`: print, or follow with a Ctrl-C notice naming how to resume. */
export async function jobLogsRun(
  ctx: CommandContext,
  name: string,
  request: Parameters<typeof printLogs>[2],
  resume = `kbatch job logs ${name} --follow`,
): Promise<number> {
  const api = ctx.api();
  if (!request.follow) {
    await printLogs(api, name, request, ctx.out);
    return 0;
  }
  const release = onInterrupt(keepsRunning(name, resume));
  try {
    await followLogs(api, name, request, ctx.out, {
      jobFinished: () => jobFinished(api, name),
      onReconnect: reconnectNotice(ctx, 'log stream'),
    });
  } finally {
    release();
  }
  return 0;
}
