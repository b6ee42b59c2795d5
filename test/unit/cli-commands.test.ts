import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { commandTree, runCli } from '../../cli/app.ts';
import { completions } from '../../cli/commands/completion.ts';
import { cronJobManifest } from '../../cli/commands/cronjobs.ts';
import { jobDetailText, watchChanges, whyPending } from '../../cli/commands/jobs.ts';
import { submitSummary } from '../../cli/commands/submit.ts';
import type { FetchLike } from '../../cli/http.ts';
import { filterJobs, parseSelector, parseStates } from '../../cli/select.ts';
import { collectCodeEntries } from '../../cli/upload.ts';
import { progressLine } from '../../cli/wait.ts';
import { writeZip } from '../../cli/zip.ts';
import { readZip } from '../../lib/uploads/archive.ts';
import type { JobDetail, JobSummary } from '../../lib/jobs/views.ts';
import { answer, scripted } from './cli-fakes.ts';

const scratch = mkdtempSync(join(tmpdir(), 'kbatch-cli-commands-'));
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }));

async function kbatch(
  argv: string[],
  fetch?: FetchLike,
  options: { stdinTTY?: boolean; answer?: string; env?: Record<string, string> } = {},
) {
  let stdout = '';
  let stderr = '';
  const config = mkdtempSync(join(scratch, 'config-'));
  const code = await runCli(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: { XDG_CONFIG_HOME: config, KBATCH_URL: 'http://kbatch.test/services/kbatch/', ...options.env },
    fetch,
    stdin: { isTTY: options.stdinTTY ?? false, question: async () => options.answer ?? '' },
  });
  return { code, stdout, stderr, config };
}

function summary(name: string, state: JobSummary['state'], labels: Record<string, string> = {}): JobSummary {
  return {
    name,
    namespace: 'kbatch-alice',
    user: 'alice',
    state,
    image: 'busybox',
    command: ['true'],
    args: undefined,
    createdAt: '2026-11-25T10:00:00.000Z',
    startedAt: undefined,
    finishedAt: undefined,
    durationSeconds: undefined,
    completions: 1,
    parallelism: 1,
    active: 0,
    succeeded: 0,
    failed: 0,
    labels,
  };
}

function detail(overrides: Partial<JobDetail> = {}): JobDetail {
  return { ...summary('j-abcde', 'pending'), conditions: [], pods: [], ...overrides };
}

// ---------------------------------------------------------------------------------------------
const founding = suite('the founding usage, verbatim');
founding('`jobs` is `job`, and --job-id names the job where NAME goes', async () => {
  const { fetch, urls } = scripted([answer(200, detail({ state: 'succeeded' }))]);
  const r = await kbatch(['jobs', 'show', '--job-id=j-abcde'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(urls[0], 'http://kbatch.test/services/kbatch/api/v1/jobs/j-abcde');
  assert.match(r.stdout, /^Name:\s+j-abcde$/m);
});
founding('--job-id and a different NAME together are a usage error', async () => {
  const r = await kbatch(['job', 'show', 'a', '--job-id', 'b']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /give NAME once/);
});
founding('submit --file uploads code like --code; -f is the YAML (--filename)', async () => {
  const dir = mkdtempSync(join(scratch, 'code-'));
  writeFileSync(join(dir, 'script.sh'), 'echo hi\n');
  const { fetch, headers } = scripted([answer(201, detail({ name: 'test-abcde' }))]);
  const r = await kbatch(
    [
      'job',
      'submit',
      '--name=test',
      '--image=busybox',
      '--command=["sh"]',
      `--file=${join(dir, 'script.sh')}`,
      '--env={"SAS_TOKEN": "secret"}',
      '-o',
      'json',
    ],
    fetch,
  );
  assert.is(r.code, 0, r.stderr);
  assert.match(headers[0]!['content-type']!, /^multipart\/form-data/);
  const printed = JSON.parse(r.stdout);
  assert.equal(printed.env, { SAS_TOKEN: '***' });
  assert.is(printed.name, 'test-abcde');
  assert.is(printed.url, 'http://kbatch.test/services/kbatch/api/v1/jobs/test-abcde');
  assert.is(printed.user, 'alice');
  assert.ok(!r.stdout.includes('secret') && !r.stderr.includes('secret'), 'no env value anywhere');
});
founding('configure --jupyterhub-url checks the token with the Hub too and stores the URL', async () => {
  const { fetch, urls } = scripted([
    answer(200, { name: 'alice', kind: 'user' }),
    answer(200, { name: 'alice', namespace: 'kbatch-alice' }),
  ]);
  const r = await kbatch(
    ['configure', '--kbatch-url=http://kbatch.test/services/kbatch', '--jupyterhub-url=http://hub.test/hub/api', '--token=t0k'],
    fetch,
  );
  assert.is(r.code, 0, r.stderr);
  assert.equal(urls, ['http://hub.test/hub/api/user', 'http://kbatch.test/services/kbatch/authorized']);
  const saved = JSON.parse(readFileSync(join(r.config, 'kbatch', 'config.json'), 'utf8'));
  assert.equal(saved, { kbatch_url: 'http://kbatch.test/services/kbatch/', token: 't0k', jupyterhub_url: 'http://hub.test/hub/api/' });
});
founding('configure refuses a Hub that knows the token as someone else than kbatch does', async () => {
  const { fetch } = scripted([answer(200, { name: 'bob' }), answer(200, { name: 'alice' })]);
  const r = await kbatch(['configure', '--url=http://kbatch.test/', '--jupyterhub-url=http://hub.test/hub/api', '--token=t'], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /knows this token as bob/);
});
founding.run();

// ---------------------------------------------------------------------------------------------
const outputs = suite('output shapes never show an env value');
outputs('the submit summary masks every env value', () => {
  const shown = submitSummary(
    detail({ name: 'x-1' }),
    { spec: { name: 'x', image: 'busybox', env: { A: '1', TOKEN: 'abc' } }, code: 'script.sh' },
    'http://k/',
  );
  assert.equal(shown.env, { A: '***', TOKEN: '***' });
  assert.is(shown.code, 'script.sh');
});
outputs('job show lists env names, profile, resources and events, never values', () => {
  const text = jobDetailText(
    detail({
      envKeys: ['A', 'TOKEN'],
      profile: 'small',
      resources: { requests: { cpu: '1' }, limits: { memory: '1Gi' } },
      labels: { team: 'ml' },
      pods: [{ name: 'j-abcde-xyz', phase: 'Pending', node: undefined, startedAt: undefined, completionIndex: undefined, containers: [] }],
      events: [
        {
          type: 'Warning',
          reason: 'FailedScheduling',
          message: '0/1 nodes are available: 1 Insufficient cpu.',
          object: 'Pod/j-abcde-xyz',
          count: 3,
          lastSeen: '2026-11-25T10:00:00.000Z',
        },
      ],
    }),
  );
  assert.match(text, /^Why:\s+no node can run it yet: 0\/1 nodes are available: 1 Insufficient cpu\.$/m);
  assert.match(text, /^Env:\s+A, TOKEN$/m);
  assert.match(text, /^Profile:\s+small$/m);
  assert.match(text, /^Requests:\s+cpu=1$/m);
  assert.match(text, /^Limits:\s+memory=1Gi$/m);
  assert.match(text, /^Labels:\s+team=ml$/m);
  assert.match(text, /Warning\s+FailedScheduling\s+Pod\/j-abcde-xyz\s+0\/1 nodes .* \(x3\)/);
});
outputs.run();

// ---------------------------------------------------------------------------------------------
const why = suite('why a job is pending, in one line');
const pod = (containers: JobDetail['pods'][number]['containers'], node?: string) => ({
  name: 'p',
  phase: 'Pending',
  node,
  startedAt: undefined,
  completionIndex: undefined,
  containers,
});
why('an image that cannot be pulled', () => {
  const job = detail({
    pods: [pod([{ name: 'job', state: 'waiting', reason: 'ImagePullBackOff', message: 'Back-off pulling image "nope"' }], 'n1')],
  });
  assert.is(whyPending(job), 'ImagePullBackOff: Back-off pulling image "nope"');
});
why('no pod yet, and a pod that cannot be created', () => {
  assert.match(whyPending(detail())!, /no pod yet/);
  const quota = detail({
    events: [{ type: 'Warning', reason: 'FailedCreate', message: 'exceeded quota', object: 'Job/j', count: 1, lastSeen: undefined }],
  });
  assert.is(whyPending(quota), 'its pod cannot be created: exceeded quota');
});
why('a pod waiting for a node without an event yet; nothing for a running job', () => {
  assert.is(whyPending(detail({ pods: [pod([])] })), 'pod p is waiting for a node');
  assert.is(whyPending(detail({ state: 'running' })), undefined);
});
why.run();

// ---------------------------------------------------------------------------------------------
const finding = suite('finding jobs: state, labels, watch');
finding('states and selectors parse and filter', () => {
  const jobs = [summary('a', 'running', { team: 'ml' }), summary('b', 'failed', { team: 'web' }), summary('c', 'running')];
  assert.equal(
    filterJobs(jobs, { states: parseStates(['running']) }).map((j) => j.name),
    ['a', 'c'],
  );
  assert.equal(
    filterJobs(jobs, { selector: parseSelector(['team=ml']) }).map((j) => j.name),
    ['a'],
  );
  assert.equal(
    filterJobs(jobs, { selector: parseSelector(['team!=ml']) }).map((j) => j.name),
    ['b', 'c'],
  );
  assert.equal(
    filterJobs(jobs, { selector: parseSelector(['!team']) }).map((j) => j.name),
    ['c'],
  );
  assert.equal(
    filterJobs(jobs, { states: parseStates(['running,failed']), selector: parseSelector(['team']) }).map((j) => j.name),
    ['a', 'b'],
  );
  assert.throws(() => parseStates(['runing']), /not one of/);
  assert.throws(() => parseSelector(['=x']), /cannot read/);
});
finding('list --state running fetches every page and filters', async () => {
  const { fetch, urls } = scripted([
    answer(200, { items: [summary('a', 'succeeded')], continue: 'next' }),
    answer(200, { items: [summary('b', 'running')], continue: null }),
  ]);
  const r = await kbatch(['job', 'list', '--state', 'running', '-o', 'name'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, 'b\n');
  assert.is(urls.length, 2);
});
finding('-A is refused with the way to every page', async () => {
  const r = await kbatch(['job', 'list', '-A']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--all-pages/);
});
finding('a watch prints new, changed and deleted jobs only', () => {
  const before = new Map([
    ['a', summary('a', 'pending')],
    ['b', summary('b', 'running')],
    ['gone', summary('gone', 'running')],
  ]);
  const { changed, gone } = watchChanges(before, [summary('a', 'running'), summary('b', 'running'), summary('new', 'pending')]);
  assert.equal(
    changed.map((j) => j.name),
    ['a', 'new'],
  );
  assert.equal(gone, ['gone']);
});
finding('progress reads state, pods of N and elapsed', () => {
  const job = detail({ state: 'running', completions: 3, succeeded: 1, pods: [pod([]), { ...pod([]), phase: 'Running' }] });
  assert.is(progressLine(job, 75), 'job j-abcde: running · pods: 1 running, 1 succeeded, 0 failed of 3 · 1m 15s');
});
finding.run();

// ---------------------------------------------------------------------------------------------
const deleting = suite('job delete: several names, -l, --all');
deleting('several names are deleted one by one; one failure does not stop the rest', async () => {
  const { fetch, methods } = scripted([
    answer(200, { deleted: 'a' }),
    answer(404, { detail: 'no', status: 404, reason: 'NotFound' }),
    answer(200, { deleted: 'c' }),
  ]);
  const r = await kbatch(['job', 'delete', 'a', 'b', 'c'], fetch);
  assert.is(r.code, 1);
  assert.equal(methods, ['DELETE', 'DELETE', 'DELETE']);
  assert.is(r.stdout, 'deleted job a\ndeleted job c\n');
  assert.match(r.stderr, /job b: job b not found/);
});
deleting('--all without a terminal and without --yes deletes nothing', async () => {
  const { fetch, methods } = scripted([answer(200, { items: [summary('a', 'running')], continue: null })]);
  const r = await kbatch(['job', 'delete', '--all'], fetch);
  assert.is(r.code, 2);
  assert.equal(methods, ['GET']);
  assert.match(r.stderr, /refusing to delete 1 job \(a\) without confirmation/);
  assert.match(r.stderr, /--yes/);
});
deleting('-l asks on a terminal; "n" deletes nothing, "y" deletes the matches', async () => {
  const list = () => answer(200, { items: [summary('a', 'running', { team: 'ml' }), summary('b', 'running')], continue: null });
  const no = scripted([list()]);
  assert.is((await kbatch(['job', 'delete', '-l', 'team=ml'], no.fetch, { stdinTTY: true, answer: 'n' })).code, 1);
  assert.equal(no.methods, ['GET']);
  const yes = scripted([list(), answer(200, { deleted: 'a' })]);
  const r = await kbatch(['job', 'delete', '-l', 'team=ml'], yes.fetch, { stdinTTY: true, answer: 'y' });
  assert.is(r.code, 0, r.stderr);
  assert.equal(yes.methods, ['GET', 'DELETE']);
  assert.is(r.stdout, 'deleted job a\n');
});
deleting.run();

// ---------------------------------------------------------------------------------------------
const help = suite('help that helps');
help('completion scripts for bash, zsh and fish call back into kbatch', async () => {
  for (const shell of ['bash', 'zsh', 'fish']) {
    const r = await kbatch(['completion', shell]);
    assert.is(r.code, 0);
    assert.match(r.stdout, /kbatch __complete/);
  }
  assert.is((await kbatch(['completion', 'tcsh'])).code, 2);
});
help('completions: commands, aliases resolved, flags, output formats', () => {
  assert.equal(completions(commandTree, ['jo']), ['job']);
  assert.equal(completions(commandTree, ['jobs', 'l']), ['list', 'logs']);
  assert.ok(completions(commandTree, ['job', 'submit', '--fi']).includes('--filename'));
  assert.equal(completions(commandTree, ['job', 'show', '-o', '']), ['table', 'json', 'yaml', 'k8s']);
});
help("a usage error inside a command points at that command's help", async () => {
  const r = await kbatch(['job', 'list', '--state', 'bogus']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^hint: run kbatch job list --help$/m);
});
help('a YAML error shows the whole message, with line and column', async () => {
  const path = join(scratch, 'bad.yaml');
  writeFileSync(path, 'name: x\ncommand: [sh\n');
  const r = await kbatch(['job', 'submit', '-f', path]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /not valid YAML:\n/);
  assert.match(r.stderr, /line \d+, column \d+/);
});
help('code: in a YAML file is relative to the file', async () => {
  const dir = mkdtempSync(join(scratch, 'yaml-'));
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'main.py'), 'print(1)\n');
  writeFileSync(join(dir, 'job.yaml'), 'name: y\nimage: python\ncode: src\n');
  const { fetch } = scripted([answer(201, detail({ name: 'y-1' }))]);
  // Run from elsewhere: the code is still found next to the YAML.
  const r = await kbatch(['job', 'submit', '-f', join(dir, 'job.yaml'), '-o', 'yaml'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /code: .*\/src/);
});
help.run();

// ---------------------------------------------------------------------------------------------
const cron = suite('cronjob submit');
cron("builds the CronJob manifest upstream builds, with the profile's image and resources", () => {
  const manifest = cronJobManifest(
    { name: 'nightly', env: { A: '1' }, command: ['true'], resources: { limits: { cpu: '1' } } },
    '0 2 * * *',
    { image: 'python', resources: { requests: { memory: '1Gi' } } },
  ) as any;
  const container = manifest.spec.jobTemplate.spec.template.spec.containers[0];
  assert.is(manifest.kind, 'CronJob');
  assert.is(manifest.spec.schedule, '0 2 * * *');
  assert.is(container.image, 'python');
  assert.equal(container.resources, { requests: { memory: '1Gi' }, limits: { cpu: '1' } });
  assert.equal(container.env, [{ name: 'A', value: '1' }]);
  assert.is(container.workingDir, '/code');
});
cron('its code zip unpacks on the server to the same tree, the directory on top', () => {
  const dir = mkdtempSync(join(scratch, 'my-dir-'));
  writeFileSync(join(dir, 'main.py'), 'print(1)\n');
  const { entries } = collectCodeEntries(dir);
  const back = readZip(writeZip(entries), { maxBytes: 1e6, maxFiles: 100 });
  const top = dir.split('/').pop();
  assert.equal(
    back.map((e) => [e.path.replace(/\/$/, ''), e.type]),
    [
      [top, 'directory'],
      [`${top}/main.py`, 'file'],
    ],
  );
  assert.is(back[1]!.data.toString(), 'print(1)\n');
});
cron.run();

const unsupported = suite('a server without cronjob schedules');
unsupported('cronjob suspend on the local backend says it is not available there', async () => {
  const { fetch, urls, methods } = scripted([
    answer(501, { detail: 'cronjob schedules are not run by the local backend', status: 501, reason: 'NotImplemented' }),
  ]);
  const r = await kbatch(['cronjob', 'suspend', 'nightly-abcde'], fetch);
  assert.is(r.code, 1);
  assert.equal([methods[0], urls[0]], ['POST', 'http://kbatch.test/services/kbatch/api/v1/cronjobs/nightly-abcde/suspend']);
  assert.match(r.stderr, /^kbatch: not available on this server \(HTTP 501\): cronjob schedules are not run by the local backend$/m);
});
unsupported.run();
