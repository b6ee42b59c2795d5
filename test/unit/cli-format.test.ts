import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { jobDetailText, jobTable, parseSince } from '../../cli/commands/jobs.ts';
import { profileTable } from '../../cli/commands/profiles.ts';
import { humanBytes, humanDuration, relativeAge, serialize, shellWords, table } from '../../cli/format.ts';
import type { JobDetail, JobSummary } from '../../lib/jobs/views.ts';

const now = new Date('2024-05-01T12:00:00Z');

function summary(overrides: Partial<JobSummary>): JobSummary {
  return {
    name: 'hello-abcde',
    namespace: 'kbatch-alice',
    user: 'alice',
    state: 'succeeded',
    image: 'python:3.12',
    command: ['python', 'main.py'],
    args: undefined,
    createdAt: '2024-05-01T11:55:00.000Z',
    startedAt: '2024-05-01T11:55:02.000Z',
    finishedAt: '2024-05-01T11:56:07.000Z',
    durationSeconds: 65,
    completions: 1,
    parallelism: 1,
    active: 0,
    succeeded: 1,
    failed: 0,
    labels: {},
    ...overrides,
  };
}

const tables = suite('tables');
tables('columns are aligned two spaces apart with no trailing blanks', () => {
  assert.is(
    table(
      ['A', 'LONGER'],
      [
        ['xyz', '1'],
        ['q', ''],
      ],
    ),
    'A    LONGER\nxyz  1\nq\n',
  );
});
tables('job list shows NAME, STATE, CREATED, DURATION, IMAGE', () => {
  const text = jobTable(
    [
      summary({}),
      summary({ name: 'run-zzzzz', state: 'running', createdAt: '2024-05-01T09:00:00.000Z', durationSeconds: undefined, image: undefined }),
    ],
    now,
  );
  assert.is(
    text,
    'NAME         STATE      CREATED  DURATION  IMAGE\n' +
      'hello-abcde  succeeded  5m ago   1m 5s     python:3.12\n' +
      'run-zzzzz    running    3h ago   -         -\n',
  );
});
tables('an array job shows its progress in STATE', () => {
  assert.match(jobTable([summary({ state: 'running', completions: 10, succeeded: 3 })], now), /running 3\/10/);
});
tables('profiles show image, requests and limits', () => {
  const text = profileTable({
    small: {
      image: 'python:3.12-slim',
      description: 'A small CPU job',
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
    },
    bare: {},
  });
  assert.match(text, /^NAME +IMAGE +REQUESTS +LIMITS +DESCRIPTION\n/);
  assert.match(text, /small +python:3.12-slim +cpu=250m,memory=256Mi +memory=512Mi +A small CPU job/);
  assert.match(text, /bare +- +- +-/);
});
tables('job show lists fields, conditions and pods', () => {
  const job: JobDetail = {
    ...summary({ state: 'failed', labels: { team: 'ml', 'kbatch.jupyter.org/username': 'alice' } }),
    conditions: [
      { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
    ],
    pods: [
      {
        name: 'hello-abcde-x1y2z',
        phase: 'Failed',
        node: 'n1',
        startedAt: '2024-05-01T11:55:02.000Z',
        completionIndex: undefined,
        containers: [{ name: 'job', state: 'terminated', reason: 'Error', exitCode: 3 }],
      },
    ],
  };
  const text = jobDetailText(job, now);
  assert.match(text, /^Name: +hello-abcde$/m);
  assert.match(text, /^State: +failed$/m);
  assert.match(text, /^Command: +python main.py$/m);
  assert.match(text, /^Labels: +team=ml$/m, 'kbatch-internal labels are hidden');
  assert.match(text, /Failed +True +BackoffLimitExceeded +Job has reached/);
  assert.match(text, /hello-abcde-x1y2z +Failed +4m ago +job: terminated \(Error, exit 3\)/);
});
tables.run();

const times = suite('times and sizes');
for (const [seconds, text] of [
  [0, '0s'],
  [42, '42s'],
  [65, '1m 5s'],
  [3600, '1h'],
  [7325, '2h 2m'],
  [90061, '1d 1h'],
  [undefined, '-'],
] as const) {
  times(`${seconds}s reads as ${text}`, () => assert.is(humanDuration(seconds), text));
}
times('relative ages', () => {
  assert.is(relativeAge('2024-05-01T11:59:30Z', now), '30s ago');
  assert.is(relativeAge('2024-05-01T11:00:00Z', now), '1h ago');
  assert.is(relativeAge('2024-04-28T12:00:00Z', now), '3d ago');
  assert.is(relativeAge(undefined, now), '-');
  assert.is(relativeAge('2024-05-01T12:00:05Z', now), '0s ago', 'clock skew never shows a negative age');
});
times('--since accepts a duration or an RFC 3339 time', () => {
  assert.is(parseSince('10m', now.getTime()), '2024-05-01T11:50:00.000Z');
  assert.is(parseSince('2024-05-01T10:00:00+02:00'), '2024-05-01T08:00:00.000Z');
  assert.throws(() => parseSince('yesterday'), /not a duration/);
});
times('bytes', () => {
  assert.is(humanBytes(512), '512 B');
  assert.is(humanBytes(5 * 1024 * 1024), '5.0 MiB');
});
times.run();

const output = suite('machine output');
output('json is indented and ends with a newline', () => {
  assert.is(serialize({ a: [1] }, 'json'), '{\n  "a": [\n    1\n  ]\n}\n');
});
output('yaml', () => {
  assert.is(serialize({ name: 'x', command: ['python', 'main.py'] }, 'yaml'), 'name: x\ncommand:\n  - python\n  - main.py\n');
});
output('shell words quote only what needs it', () => {
  assert.is(shellWords(['python', '-c', "print('hi there')"]), `python -c 'print('\\''hi there'\\'')'`);
  assert.is(shellWords(undefined), '');
});
output.run();
