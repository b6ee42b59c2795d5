import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { Deps } from '../../lib/api/deps.ts';
import { jobLogs } from '../../lib/api/logs.ts';
import type { Backend } from '../../lib/backend/types.ts';
import { loadSettings } from '../../lib/config.ts';

/** An in-memory backend holding one finished job; only what jobLogs reads is implemented. */
function fakeDeps(job: V1Job, pods: V1Pod[], logs: Record<string, string | Error>): Deps {
  const backend = {
    kind: 'local',
    getJob: async () => job,
    listPods: async () => pods,
    getPod: async (_ns: string, name: string) => pods.find((p) => p.metadata!.name === name)!,
    podLogs: async (_ns: string, name: string) => {
      const log = logs[name];
      if (log instanceof Error) throw log;
      return Readable.from([log ?? '']);
    },
  } as unknown as Backend;
  return {
    settings: loadSettings({}),
    backend,
    auth: undefined as never,
    admin: { profiles: {}, rawProfiles: {}, jobTemplate: undefined },
  };
}

const pod = (name: string): V1Pod => ({
  metadata: { name, labels: { 'batch.kubernetes.io/job-name': 'j' } },
  status: { phase: 'Succeeded' },
});
const finished = (completions: number): V1Job => ({
  metadata: { name: 'j' },
  spec: { completions, template: {} },
  status: { conditions: [{ type: 'Complete', status: 'True' }] },
});
const alice = { name: 'alice', namespace: 'kbatch-alice', groups: [], admin: false, scopes: [], token: '' };

async function read(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

const logs = suite('jobLogs');
logs('one pod: its log as is', async () => {
  const deps = fakeDeps(finished(1), [pod('j-aaaaa')], { 'j-aaaaa': 'a\nb\n' });
  assert.is(await read(await jobLogs(deps, alice, 'j', { follow: false }, new AbortController().signal)), 'a\nb\n');
});
logs('an array: every pod, each line prefixed with its pod', async () => {
  const deps = fakeDeps(finished(2), [pod('j-aaaaa'), pod('j-bbbbb')], { 'j-aaaaa': 'one\n', 'j-bbbbb': 'two' });
  assert.is(await read(await jobLogs(deps, alice, 'j', { follow: false }, new AbortController().signal)), '[j-aaaaa] one\n[j-bbbbb] two\n');
});
logs('a pod whose log cannot be read is named, not silently skipped', async () => {
  const deps = fakeDeps(finished(2), [pod('j-aaaaa'), pod('j-bbbbb')], { 'j-aaaaa': new Error('container gone'), 'j-bbbbb': 'two\n' });
  assert.is(
    await read(await jobLogs(deps, alice, 'j', { follow: false }, new AbortController().signal)),
    '[kbatch] no logs for pod j-aaaaa: container gone\n[j-bbbbb] two\n',
  );
  // A follower retries a few rounds first, then says so and still ends.
  const followed = await read(await jobLogs(deps, alice, 'j', { follow: true }, new AbortController().signal));
  assert.equal(followed.split('\n').sort(), ['', '[j-bbbbb] two', '[kbatch] no logs for pod j-aaaaa: container gone']);
});
logs('no pods yet is a 404 that says the job is pending', async () => {
  const pending: V1Job = { metadata: { name: 'j' }, spec: { template: {} }, status: {} };
  await jobLogs(fakeDeps(pending, [], {}), alice, 'j', { follow: false }, new AbortController().signal).then(
    () => assert.unreachable(),
    (error: Error) => assert.match(error.message, /No pods found for job j yet; it is still pending/),
  );
});

const follow = suite('jobLogs, following');

/** A backend whose job runs until `finish()`; counts the reads a follower makes. */
function runningJob(completions: number, pods: V1Pod[], logs: Record<string, () => Readable>) {
  const calls = { getJob: 0, listPods: 0, podLogs: [] as string[] };
  let job: V1Job = { metadata: { name: 'j' }, spec: { completions, template: {} }, status: { active: 1 } };
  const backend = {
    kind: 'local',
    getJob: async () => (calls.getJob++, job),
    listPods: async () => (calls.listPods++, pods),
    getPod: async (_ns: string, name: string) => pods.find((p) => p.metadata!.name === name)!,
    podLogs: async (_ns: string, name: string, options: { container?: string }) => {
      calls.podLogs.push(`${name}/${options.container}`);
      return logs[name]!();
    },
  } as unknown as Backend;
  const settings = { ...loadSettings({}), logPollSeconds: 1 };
  const deps: Deps = { settings, backend, auth: undefined as never, admin: { profiles: {}, rawProfiles: {}, jobTemplate: undefined } };
  return { deps, calls, finish: () => (job = finished(completions)) };
}
const running = (name: string): V1Pod => ({
  metadata: { name, labels: { 'batch.kubernetes.io/job-name': 'j' } },
  spec: { containers: [{ name: 'job' }] },
  status: { phase: 'Running' },
});

follow('one running pod, unprefixed: its log as is, no re-listing while it streams, and the end once the job is final', async () => {
  const { deps, calls, finish } = runningJob(1, [running('j-aaaaa')], { 'j-aaaaa': () => Readable.from(['a\n', 'b']) });
  const stream = await jobLogs(deps, alice, 'j', { follow: true }, new AbortController().signal);
  let finishedAt = 0;
  setTimeout(() => {
    finishedAt = Date.now();
    finish();
  }, 700);
  assert.is(await read(stream), 'a\nb');
  // The pod's log ended at once; the stream waited for the Job controller to record the end.
  assert.ok(finishedAt > 0 && Date.now() >= finishedAt, 'ended only after the job was final');
  assert.is(calls.listPods, 1);
  assert.equal(calls.podLogs, ['j-aaaaa/job']);
});

follow('an array: lines of every pod prefixed, split lines joined, the end once the job finished and its pods streamed', async () => {
  const { deps, finish } = runningJob(2, [running('j-aaaaa'), running('j-bbbbb')], {
    'j-aaaaa': () => Readable.from(['on', 'e\ntw', 'o\n']),
    'j-bbbbb': () => Readable.from(['three']),
  });
  const stream = await jobLogs(deps, alice, 'j', { follow: true }, new AbortController().signal);
  setTimeout(finish, 300);
  assert.equal((await read(stream)).split('\n').sort(), ['', '[j-aaaaa] one', '[j-aaaaa] two', '[j-bbbbb] three']);
});

follow('a job that stays pending is polled ever less often, not twice a second', async () => {
  const { deps, calls } = runningJob(2, [], {});
  const controller = new AbortController();
  const stream = await jobLogs(deps, alice, 'j', { follow: true }, controller.signal);
  stream.resume();
  await new Promise((resolve) => setTimeout(resolve, 6000));
  controller.abort();
  // Half-second polls would be 12 lists in 6 s; backing off (0.5, 1, 2, 2 s ...) makes it 4 or 5.
  assert.ok(calls.listPods <= 6, `${calls.listPods} lists`);
  assert.ok(calls.listPods >= 3, `${calls.listPods} lists`);
});

follow('a client that goes away ends the follow', async () => {
  const { deps } = runningJob(2, [], {});
  const controller = new AbortController();
  const stream = await jobLogs(deps, alice, 'j', { follow: true }, controller.signal);
  const text = read(stream);
  setTimeout(() => controller.abort(), 100);
  assert.is(await text, '');
});

logs.run();
follow.run();
