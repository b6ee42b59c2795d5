import type { JobDetail } from '../lib/jobs/views.ts';
import type { KbatchApi } from './api.ts';
import { reconnectNotice, type CommandContext } from './command.ts';
import { keepsRunning, onInterrupt } from './interrupt.ts';
import { StatusLine } from './status-line.ts';
import { outcome, progressLine, waitForJob } from './wait.ts';

/** Seconds since the job was created (the wait may have started later), never negative. */
function elapsedSeconds(job: JobDetail, waitStarted: number): number {
  const created = job.createdAt ? Date.parse(job.createdAt) : Number.NaN;
  return Math.max(0, (Date.now() - (Number.isNaN(created) ? waitStarted : created)) / 1000);
}

/**
 * `job wait` and `submit --wait`, one behaviour: live progress on a terminal's stderr (nothing when
 * piped), then the outcome as the result line on stderr, `kbatch: job NAME succeeded after 12s`,
 * so stdout carries only what scripts capture (the job name). Exit 0 when it succeeded, else 1.
 */
export async function watchJob(
  ctx: CommandContext,
  api: KbatchApi,
  name: string,
  options: { timeoutSeconds?: number; connected?: boolean } = {},
): Promise<number> {
  const status = new StatusLine(ctx.io.stderr);
  const started = Date.now();
  let last: JobDetail | undefined;
  const draw = () => last && status.update(progressLine(last, elapsedSeconds(last, started)));
  // Between polls the elapsed time still ticks.
  const ticker = status.active ? setInterval(draw, 1000) : undefined;
  ticker?.unref();
  const release = onInterrupt(keepsRunning(name, `kbatch job wait ${name}`));
  const notice = reconnectNotice(ctx, 'wait');
  try {
    const job = await waitForJob(api, name, {
      ...options,
      onProgress: (job) => {
        last = job;
        draw();
      },
      onReconnect: (attempt, reason) => {
        status.clear();
        notice(attempt, reason);
      },
    });
    status.clear();
    ctx.err(`kbatch: ${outcome(job)}\n`);
    return job.state === 'succeeded' ? 0 : 1;
  } finally {
    status.clear();
    if (ticker) clearInterval(ticker);
    release();
  }
}
