import type { JobDetail } from '../../lib/views.ts';
import type { ApiClient } from '../client.ts';
import { outputOption, type Command, type CommandContext } from '../command.ts';
import { humanBytes, parseOutputFormat, serialize } from '../format.ts';
import { jobFinished, outcome, waitForJob } from '../jobs.ts';
import { followLogs } from '../logs.ts';
import { buildSubmitPlan, readJobFile } from '../spec.ts';
import { buildCodeArchive, multipartBody, progressStream } from '../upload.ts';

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

async function submitWithCode(ctx: CommandContext, client: ApiClient, spec: object, codePath: string): Promise<JobDetail> {
  const code = buildCodeArchive(codePath);
  if (code.skipped.length) ctx.err(`kbatch: not uploading ${code.skipped.join(', ')}\n`);
  const body = multipartBody({ spec: JSON.stringify(spec) }, { field: 'archive', filename: 'code.tar.gz', contentType: 'application/gzip', data: code.archive });
  const tty = ctx.io.stderr.isTTY;
  if (tty) ctx.err(`kbatch: packed ${code.files} file${code.files === 1 ? '' : 's'} (${humanBytes(code.bytes)}, ${humanBytes(code.archive.length)} compressed)\n`);
  const progress = tty ? progressPrinter(ctx, body.length) : undefined;
  const stream = progressStream(body.parts, (sent) => progress?.update(sent));
  try {
    return await client.json<JobDetail>('POST', 'api/v1/jobs', {
      body: stream,
      // An upload over a slow link may take long; progress shows it is moving.
      timeoutMs: 0,
      headers: { 'content-type': body.contentType, 'content-length': String(body.length) },
    });
  } finally {
    progress?.close();
  }
}

export const submitCommand: Command = {
  kind: 'command',
  name: 'submit',
  summary: 'Submit a job to run on Kubernetes.',
  description:
    'Submit a job to run on Kubernetes. The name is a prefix: the server adds a random suffix and\n' +
    'prints the full name. --code uploads a file or directory, unpacked as the working directory /code.',
  options: [
    { name: 'name', short: 'n', type: 'string', value: 'NAME', help: 'job name prefix (required, here or in --file)' },
    { name: 'image', type: 'string', value: 'IMAGE', help: 'container image (required unless the profile sets one)' },
    { name: 'command', type: 'string', value: 'JSON', help: 'command as a JSON list, e.g. \'["python", "main.py"]\'' },
    { name: 'args', type: 'string', value: 'JSON', help: 'arguments as a JSON list' },
    { name: 'env', short: 'e', type: 'string', repeatable: true, value: 'KEY=VALUE|JSON', help: 'environment: KEY=VALUE, or a JSON object' },
    { name: 'code', short: 'c', type: 'string', value: 'PATH', help: 'file or directory to upload into /code (skips .git, __pycache__, .ipynb_checkpoints, node_modules)' },
    { name: 'file', short: 'f', type: 'string', value: 'YAML', help: 'job file with name, image, command, args, env, code, profile, ... (flags override it)' },
    { name: 'profile', short: 'p', type: 'string', value: 'NAME', help: 'server-defined profile (see kbatch profiles)' },
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
    { name: 'wait', type: 'boolean', help: 'wait until the job finishes; exit 0 if it succeeded, else 1' },
    { name: 'follow', type: 'boolean', help: 'stream the logs after submitting, then exit like --wait' },
    outputOption(['name', 'json', 'yaml'], 'name'),
  ],
  examples: [
    `kbatch job submit -n hello --image python:3.12 --command '["python", "-c", "print(42)"]'`,
    `kbatch job submit -n train --image python:3.12 -c ./project --command '["python", "train.py"]' -e EPOCHS=3 --follow`,
    `kbatch job submit -f job.yaml --array 10 --parallelism 2`,
  ],
  async run(ctx) {
    const format = parseOutputFormat(ctx.args.string('output'), ['name', 'json', 'yaml'], 'name');
    const fileName = ctx.args.string('file');
    const plan = buildSubmitPlan(ctx.args, fileName ? readJobFile(fileName) : {});
    const client = ctx.client();
    const job = plan.code
      ? await submitWithCode(ctx, client, plan.spec, plan.code)
      : await client.json<JobDetail>('POST', 'api/v1/jobs', { json: plan.spec });
    ctx.out(format === 'name' ? `${job.name}\n` : serialize(job, format));
    const follow = ctx.args.flag('follow');
    if (!follow && !ctx.args.flag('wait')) return 0;
    if (follow) {
      await followLogs(client, job.name, { follow: true, timestamps: false }, ctx.out, {
        jobFinished: () => jobFinished(client, job.name),
        onReconnect: (attempt, reason) => ctx.err(`kbatch: log stream interrupted (${reason}); resuming (attempt ${attempt})\n`),
      });
    }
    const finished = await waitForJob(client, job.name);
    ctx.err(`kbatch: ${outcome(finished)}\n`);
    return finished.state === 'succeeded' ? 0 : 1;
  },
};
