import { randomUUID } from 'node:crypto';
import { networkErrorCode } from '../../lib/net.ts';
import type { JobDetail } from '../../lib/jobs/views.ts';
import type { KbatchApi } from '../api.ts';
import { apiPaths } from '../../lib/contract.ts';
import { outputOption, reconnectNotice, type Command, type CommandContext } from '../command.ts';
import { humanBytes, parseOutputFormat, serialize } from '../format.ts';
import { keepsRunning, onInterrupt } from '../interrupt.ts';
import { buildSubmitPlan, readJobFile, type SubmitPlan } from '../job-spec.ts';
import { followLogs } from '../logs.ts';
import { failureText, isTransient, Reconnects } from '../retry.ts';
import { multipartBody, packCodeArchive, progressStream, type MultipartBody } from '../upload.ts';
import { jobFinished } from '../wait.ts';
import { watchJob } from '../watch.ts';

/** Redraws one stderr line at most every 100 ms; only ever used on a terminal. */
function progressPrinter(ctx: CommandContext, total: number) {
  let lastDraw = 0;
  let open = false;
  return {
    update(sent: number) {
      const now = Date.now();
      if (sent < total && now - lastDraw < 100) return;
      lastDraw = now;
      const percent = total ? Math.floor((sent / total) * 100) : 100;
      open = sent < total;
      ctx.err(`\rkbatch: uploading code ${humanBytes(sent)} / ${humanBytes(total)} (${percent}%)${open ? '' : '\n'}`);
    },
    /** Ends a half-drawn line so an error message starts on its own. */
    close() {
      if (open) ctx.err('\n');
      open = false;
    },
  };
}

/** Packs `--code` once, into a temporary file (`dispose` removes it); each attempt streams the same bytes again. */
async function prepareUpload(ctx: CommandContext, spec: object, codePath: string): Promise<MultipartBody & { dispose(): Promise<void> }> {
  const code = await packCodeArchive(codePath);
  if (code.skipped.length) ctx.err(`kbatch: not uploading ${code.skipped.join(', ')}\n`);
  const body = multipartBody(
    { spec: JSON.stringify(spec) },
    { field: 'archive', filename: 'code.tar.gz', contentType: 'application/gzip', data: { path: code.path, size: code.size } },
  );
  if (ctx.io.stderr.isTTY)
    ctx.err(
      `kbatch: packed ${code.files} file${code.files === 1 ? '' : 's'} (${humanBytes(code.bytes)}, ${humanBytes(code.size)} compressed)\n`,
    );
  return { ...body, dispose: code.dispose };
}

async function uploadAndSubmit(ctx: CommandContext, api: KbatchApi, body: MultipartBody, idempotencyKey: string): Promise<JobDetail> {
  const progress = ctx.io.stderr.isTTY ? progressPrinter(ctx, body.length) : undefined;
  const stream = progressStream(body.parts, (sent) => progress?.update(sent));
  try {
    return await api.submitJobWithCode({ stream, contentType: body.contentType, length: body.length }, idempotencyKey);
  } finally {
    progress?.close();
  }
}

/** Nothing was sent to a server that refused the connection or has no address: retrying cannot help. */
const neverConnected = new Set(['ECONNREFUSED', 'ENOTFOUND']);

/**
 * Submits, retrying a few times when the answer was lost or the server was briefly unavailable.
 * One idempotency key per invocation, sent with every attempt, lets the server answer a retry
 * with the job the first attempt created instead of creating a second one.
 */
async function submit(ctx: CommandContext, api: KbatchApi, plan: SubmitPlan): Promise<JobDetail> {
  const idempotencyKey = randomUUID();
  const upload = plan.code ? await prepareUpload(ctx, plan.spec, plan.code) : undefined;
  const reconnects = new Reconnects({ maxReconnects: 3, onReconnect: reconnectNotice(ctx, 'submit') });
  try {
    for (;;) {
      try {
        return upload ? await uploadAndSubmit(ctx, api, upload, idempotencyKey) : await api.submitJob(plan.spec, idempotencyKey);
      } catch (error) {
        const code = networkErrorCode(error);
        if (!isTransient(error) || (code && neverConnected.has(code))) throw error;
        await reconnects.failed(failureText(error), () => error as Error);
      }
    }
  } finally {
    await upload?.dispose();
  }
}

/** Every env value as `***`: no output shape ever shows one (they may be tokens). */
export function maskedEnv(env: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.keys(env ?? {}).map((key) => [key, '***']));
}

/**
 * What `submit -o json|yaml` prints: what was submitted, in the founding notes' shape (name, url,
 * image, command, env masked, user, code), plus where the job runs and its state.
 */
export function submitSummary(job: JobDetail, plan: SubmitPlan, baseUrl: string) {
  return {
    name: job.name,
    url: new URL(apiPaths.job(job.name), baseUrl).toString(),
    image: job.image ?? plan.spec.image,
    command: job.command ?? plan.spec.command ?? null,
    args: job.args ?? plan.spec.args ?? null,
    env: maskedEnv(plan.spec.env),
    user: job.user ?? null,
    namespace: job.namespace,
    profile: plan.spec.profile ?? null,
    code: plan.code ?? null,
    state: job.state,
  };
}

export const submitCommand: Command = {
  kind: 'command',
  name: 'submit',
  summary: 'Submit a job to run on Kubernetes.',
  description:
    'Submit a job to run on Kubernetes. The name is a prefix: the server adds a random suffix and\n' +
    'prints the full name. --code (or --file) uploads a file or a directory into the working directory\n' +
    '/code: script.sh is at /code/script.sh, a directory my-dir at /code/my-dir/.\n' +
    '-f/--filename reads the job from YAML (as kubectl -f); its code: is relative to the YAML file.',
  options: [
    { name: 'name', short: 'n', type: 'string', value: 'NAME', help: 'job name prefix (required, here or in the --filename YAML)' },
    { name: 'image', type: 'string', value: 'IMAGE', help: 'container image (required unless the profile sets one)' },
    { name: 'command', type: 'string', value: 'JSON', help: 'command as a JSON list, e.g. \'["python", "main.py"]\'' },
    { name: 'args', type: 'string', value: 'JSON', help: 'arguments as a JSON list' },
    {
      name: 'env',
      short: 'e',
      type: 'string',
      repeatable: true,
      value: 'KEY=VALUE|JSON',
      help: 'environment: KEY=VALUE, or a JSON object',
    },
    {
      name: 'code',
      short: 'c',
      aliases: ['file'],
      type: 'string',
      value: 'PATH',
      help: 'file or directory to upload into /code (skips .git, __pycache__, .ipynb_checkpoints, node_modules)',
    },
    {
      name: 'filename',
      short: 'f',
      type: 'string',
      value: 'YAML',
      help: 'job file with name, image, command, args, env, code, profile, ... (flags override it)',
    },
    {
      name: 'profile',
      short: 'p',
      type: 'string',
      repeatable: true,
      value: 'NAME',
      help: 'server-defined profile (see kbatch profiles); -p NAME=VALUE is a notebook parameter',
    },
    {
      name: 'notebook',
      type: 'string',
      value: 'PATH',
      help: 'run this .ipynb with papermill (in the image); uploads its directory unless --code is given',
    },
    {
      name: 'parameter',
      type: 'string',
      repeatable: true,
      value: 'NAME=VALUE',
      help: 'notebook parameter, also -p NAME=VALUE: 3, 0.5, true, null, JSON, else text; NAME:=JSON forces JSON',
    },
    {
      name: 'sweep',
      type: 'string',
      repeatable: true,
      value: 'NAME=V1,V2',
      help: 'run the notebook once per combination of the swept values (an indexed job array)',
    },
    { name: 'cpu', type: 'string', value: 'N', help: 'CPU request and limit, e.g. 2 or 500m' },
    { name: 'memory', type: 'string', value: 'SIZE', help: 'memory request and limit, e.g. 4Gi' },
    { name: 'gpu', type: 'string', value: 'N', help: 'number of GPUs (nvidia.com/gpu)' },
    { name: 'array', type: 'string', value: 'N', help: 'run N indexed copies; each sees JOB_COMPLETION_INDEX' },
    { name: 'parallelism', type: 'string', value: 'N', help: 'how many copies run at once' },
    { name: 'retries', type: 'string', value: 'N', help: 'retries before the job fails (backoffLimit, default 0)' },
    { name: 'timeout', type: 'string', value: 'DURATION', help: 'stop the job after this long (activeDeadlineSeconds; 3600, 90m, 2h)' },
    { name: 'ttl', type: 'string', value: 'DURATION', help: 'delete the job this long after it finishes' },
    { name: 'label', short: 'l', type: 'string', repeatable: true, value: 'KEY=VALUE', help: 'label the job' },
    { name: 'description', short: 'd', type: 'string', value: 'TEXT', help: 'accepted for upstream compatibility; not sent' },
    { name: 'wait', type: 'boolean', help: 'wait until the job finishes (progress on a terminal); exit 0 if it succeeded, else 1' },
    { name: 'follow', type: 'boolean', help: 'stream the logs after submitting, then exit like --wait' },
    outputOption(['name', 'json', 'yaml', 'k8s'], 'name'),
  ],
  examples: [
    `kbatch job submit -n hello --image python:3.12 --command '["python", "-c", "print(42)"]'`,
    `kbatch job submit -n train --image python:3.12 -c ./project --command '["python", "train.py"]' -e EPOCHS=3 --follow`,
    `kbatch job submit -f job.yaml --array 10 --parallelism 2`,
    `kbatch job submit -n sweep --image jupyter/scipy-notebook --notebook analysis.ipynb -p alpha=0.5 --sweep seed=1,2,3`,
    `kbatch job submit --name=test --image=python:3.12 --command='["sh"]' --file=examples/script.sh --env='{"SAS_TOKEN": "..."}'`,
  ],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['name', 'json', 'yaml', 'k8s'], 'name');
    const fileName = ctx.args.string('filename');
    const plan = buildSubmitPlan(ctx.args, fileName ? readJobFile(fileName) : {});
    const api = ctx.api();
    const job = await submit(ctx, api, plan);
    if (format === 'name') ctx.out(`${job.name}\n`);
    else if (format === 'k8s') ctx.out(serialize(await api.getJobManifest(job.name), 'json'));
    else ctx.out(serialize(submitSummary(job, plan, api.baseUrl), format));
    const follow = ctx.args.flag('follow');
    if (!follow && !ctx.args.flag('wait')) return 0;
    if (follow) {
      const release = onInterrupt(keepsRunning(job.name, `kbatch job logs ${job.name} --follow`));
      try {
        await followLogs(api, job.name, { follow: true, timestamps: false }, ctx.out, {
          jobFinished: () => jobFinished(api, job.name),
          onReconnect: reconnectNotice(ctx, 'log stream'),
        });
      } finally {
        release();
      }
    }
    // The submit got through, so a failure of the first poll is a blip worth riding out.
    return watchJob(ctx, api, job.name, { connected: true });
  },
};
