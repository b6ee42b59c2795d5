import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { JobDetail, JobState } from '../../lib/jobs/views.ts';
import { KbatchApi } from '../../cli/api.ts';
import { runCli } from '../../cli/app.ts';
import { ApiClient } from '../../cli/client.ts';
import type { FetchLike } from '../../cli/http.ts';
import { waitForJob } from '../../cli/wait.ts';
import { answer, refused, reset, scripted, type Step } from './cli-fakes.ts';

const job = (state: JobState): JobDetail => ({ name: 'j', state, conditions: [], pods: [] }) as unknown as JobDetail;
const api = (fetch: FetchLike) => new KbatchApi(new ApiClient('http://kbatch.test/services/kbatch/', 'tok', fetch));
const noSleep = async () => {};

const waiting = suite('job wait rides out dropped connections and 5xx');
waiting("resumes after a reset connection, a proxy's HTML 502 and a 503, and returns the final job", async () => {
  const { fetch, urls } = scripted([
    answer(200, job('running')),
    reset,
    answer(502, '<html><body>502 Bad Gateway</body></html>', 'text/html'),
    answer(503, { detail: 'shutting down', status: 503, reason: 'Unavailable' }),
    answer(200, job('succeeded')),
  ]);
  const notices: string[] = [];
  const done = await waitForJob(api(fetch), 'j', {
    sleep: noSleep,
    onReconnect: (attempt, reason) => notices.push(`${attempt}: ${reason}`),
  });
  assert.is(done.state, 'succeeded');
  assert.is(urls.length, 5);
  assert.ok(
    urls.every((u) => u === 'http://kbatch.test/services/kbatch/api/v1/jobs/j?events=false'),
    'a wait asks for the state, not the events',
  );
  assert.equal(
    notices.map((n) => n.split(':')[0]),
    ['1', '2', '3'],
  );
  assert.match(notices[0]!, /ECONNRESET/);
  assert.match(notices[1]!, /HTTP 502/);
});
waiting('backs off between reconnects, doubling up to 5 s', async () => {
  const slept: number[] = [];
  const { fetch } = scripted([answer(200, job('running')), reset, reset, reset, reset, reset, reset, answer(200, job('failed'))]);
  await waitForJob(api(fetch), 'j', { sleep: async (ms) => void slept.push(ms), intervalMs: 1000 });
  // The first sleep is the poll interval; then one backoff per failure, no poll interval on top.
  assert.equal(slept, [500, 250, 500, 1000, 2000, 4000, 5000]);
});
waiting('gives up after too many failures in a row, saying the job keeps running', async () => {
  const { fetch } = scripted([answer(200, job('running')), reset, reset, reset]);
  try {
    await waitForJob(api(fetch), 'j', { sleep: noSleep, maxReconnects: 2 });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /lost contact with kbatch while waiting for job j \(.*ECONNRESET/);
    assert.match((error as { hint?: string }).hint ?? '', /the job keeps running; resume with kbatch job wait j/);
  }
});
waiting('a success resets the count: separate blips never add up to giving up', async () => {
  const steps: Step[] = [answer(200, job('running'))];
  for (let i = 0; i < 5; i++) steps.push(reset, reset, answer(200, job('running')));
  steps.push(answer(200, job('succeeded')));
  const { fetch } = scripted(steps);
  assert.is((await waitForJob(api(fetch), 'j', { sleep: noSleep, maxReconnects: 2 })).state, 'succeeded');
});
waiting('a server never reached fails at once: a wrong URL is not a blip', async () => {
  const { fetch, urls } = scripted([refused]);
  try {
    await waitForJob(api(fetch), 'j', { sleep: noSleep });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /cannot reach kbatch at http:\/\/kbatch\.test\/services\/kbatch\/ \(ECONNREFUSED\)/);
    assert.is(urls.length, 1);
  }
});
waiting('after a submit got through (connected), even the first poll is retried', async () => {
  const { fetch } = scripted([refused, answer(200, job('succeeded'))]);
  assert.is((await waitForJob(api(fetch), 'j', { sleep: noSleep, connected: true })).state, 'succeeded');
});
waiting('a 404 is not retried: the job was deleted', async () => {
  const { fetch, urls } = scripted([
    answer(200, job('running')),
    answer(404, { detail: 'jobs.batch "j" not found', status: 404, reason: 'NotFound' }),
  ]);
  try {
    await waitForJob(api(fetch), 'j', { sleep: noSleep });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /job j not found/);
    assert.is(urls.length, 2);
  }
});
waiting('the timeout still holds while reconnecting', async () => {
  let clock = 0;
  const { fetch } = scripted([answer(200, job('running')), reset, reset, reset]);
  try {
    await waitForJob(api(fetch), 'j', { timeoutSeconds: 1, now: () => clock, sleep: async (ms) => void (clock += ms) });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /timed out after 1s waiting for job j \(still running\)/);
  }
});
waiting.run();

async function kbatch(argv: string[], fetch: FetchLike) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), 'kbatch-cli-wait-')), KBATCH_URL: 'http://kbatch.test/services/kbatch/' },
    fetch,
  });
  return { code, stdout, stderr };
}

const command = suite('kbatch job wait / submit --wait across a drop');
command('job wait prints a notice per reconnect, then the outcome as the result line on stderr, like submit --wait', async () => {
  const { fetch } = scripted([answer(200, job('running')), reset, answer(200, job('succeeded'))]);
  const r = await kbatch(['job', 'wait', 'j'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, '');
  assert.match(r.stderr, /^kbatch: wait interrupted \(.*ECONNRESET.*\); resuming \(attempt 1\)\nkbatch: job j succeeded\n$/);
});
command('submit --wait: the job was created, then the server restarted; the wait picks up after it', async () => {
  const { fetch, methods } = scripted([answer(201, job('pending')), refused, answer(200, job('failed'))]);
  const r = await kbatch(['job', 'submit', '-n', 'j', '--image', 'busybox', '--wait'], fetch);
  assert.is(r.code, 1, r.stderr);
  assert.is(r.stdout, 'j\n');
  assert.equal(methods, ['POST', 'GET', 'GET']);
  assert.match(r.stderr, /wait interrupted \(.*ECONNREFUSED.*\); resuming \(attempt 1\)/);
  assert.match(r.stderr, /kbatch: job j failed/);
});
command.run();
