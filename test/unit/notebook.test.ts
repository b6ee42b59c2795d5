import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildJobObjects } from '../../lib/k8s/builders.ts';
import { annotations } from '../../lib/k8s/names.ts';
import {
  executedNotebookName,
  notebookCommand,
  notebookEnv,
  notebookView,
  parameterSets,
  recognisePapermill,
} from '../../lib/jobs/notebook.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { jobDetail } from '../../lib/jobs/views.ts';
import { rejects } from './field-errors.ts';

const spec = suite('notebook fields of the native spec');
spec('a notebook with typed parameters', () => {
  const parsed = parseJobSpec({
    name: 'nb',
    notebook: 'analysis.ipynb',
    parameters: { n: 3, rate: 0.5, on: true, label: 'x', none: null, cfg: { a: [] }, empty: [] },
  });
  assert.is(parsed.notebook, 'analysis.ipynb');
  // null, {} and [] are values here, not absences.
  assert.equal(parsed.parameters, { n: 3, rate: 0.5, on: true, label: 'x', none: null, cfg: { a: [] }, empty: [] });
  assert.is(parsed.completions, undefined);
});
spec('a sweep sets completions to the size of the product', () => {
  const parsed = parseJobSpec({ name: 'nb', notebook: 'a.ipynb', sweep: { a: [1, 2, 3], b: ['x', 'y'] }, parallelism: 2 });
  assert.is(parsed.completions, 6);
  assert.is(parsed.parallelism, 2);
});
for (const [what, input, field] of [
  ['a path outside /code', { notebook: '../x.ipynb' }, 'notebook'],
  ['an absolute path', { notebook: '/etc/x.ipynb' }, 'notebook'],
  ['a file that is not a notebook', { notebook: 'run.py' }, 'notebook'],
  ['a command with a notebook', { notebook: 'a.ipynb', command: ['python'] }, 'command'],
  ['parameters without a notebook', { parameters: { a: 1 } }, 'parameters'],
  ['a sweep without a notebook', { sweep: { a: [1] } }, 'sweep'],
  ['a name that is not an identifier', { notebook: 'a.ipynb', parameters: { 'a-b': 1 } }, 'parameters.a-b'],
  ['a name that injects code', { notebook: 'a.ipynb', parameters: { 'x=1;import os': 1 } }, 'parameters.x=1;import os'],
  ['a Python keyword', { notebook: 'a.ipynb', parameters: { class: 1 } }, 'parameters.class'],
  ['an empty sweep axis', { notebook: 'a.ipynb', sweep: { a: [] } }, 'sweep.a'],
  ['a name both fixed and swept', { notebook: 'a.ipynb', parameters: { a: 1 }, sweep: { a: [1, 2] } }, 'sweep.a'],
  ['completions other than the sweep size', { notebook: 'a.ipynb', sweep: { a: [1, 2] }, completions: 3 }, 'completions'],
  ['a sweep above the completions maximum', { notebook: 'a.ipynb', sweep: { a: range(100), b: range(101) } }, 'sweep'],
  [
    'a sweep whose sets would not fit one env variable',
    { notebook: 'a.ipynb', parameters: { big: 'x'.repeat(1300) }, sweep: { a: range(100) } },
    'sweep',
  ],
  ['parameters too large', { notebook: 'a.ipynb', parameters: { big: 'x'.repeat(40000) } }, 'parameters'],
  ['too deep a value', { notebook: 'a.ipynb', parameters: { deep: nested(20) } }, 'parameters.deep' + '[0]'.repeat(17)],
] as const) {
  spec(`refuses ${what}`, () => void rejects({ name: 'nb', ...input }, field));
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
function nested(depth: number): unknown {
  return depth === 0 ? 1 : [nested(depth - 1)];
}
spec.run();

const sets = suite('parameter sets of a sweep');
for (const [what, run, expected] of [
  ['no sweep: the fixed parameters', { parameters: { a: 1 } }, [{ a: 1 }]],
  ['one axis', { sweep: { a: [1, 2] } }, [{ a: 1 }, { a: 2 }]],
  [
    'two axes, the last fastest, fixed ones in every set',
    { parameters: { f: 'x' }, sweep: { a: [1, 2], b: [true, false] } },
    [
      { f: 'x', a: 1, b: true },
      { f: 'x', a: 1, b: false },
      { f: 'x', a: 2, b: true },
      { f: 'x', a: 2, b: false },
    ],
  ],
] as const) {
  sets(what, () => assert.equal(parameterSets(run as never), expected));
}
sets('executed notebooks are named after the notebook, with the index for a sweep', () => {
  assert.is(executedNotebookName('dir/analysis.ipynb'), 'analysis.ipynb');
  assert.is(executedNotebookName('dir/analysis.ipynb', 2), 'analysis-2.ipynb');
});
sets.run();

const command = suite('the papermill entry');
const hostile = `x'; touch /tmp/pwned; echo '$(id)\`id\`"`;
command('the script is constant: names, values and the path travel in env, never in the script', () => {
  const env = notebookEnv({ notebook: `it's ${hostile}.ipynb`, parameters: { a: hostile } });
  assert.equal(JSON.parse(env.KBATCH_PARAMETERS!), { a: hostile });
  assert.equal(notebookCommand(), notebookCommand());
  assert.not.ok(notebookCommand().join(' ').includes('pwned'));
  // The Python program sits in single quotes; a quote inside would end it.
  const script = notebookCommand()[2]!;
  const program = script.slice(script.indexOf("-c '") + 4, script.lastIndexOf("'"));
  assert.not.ok(program.includes("'"));
});
command('a sweep puts every set in KBATCH_SWEEP, indexed by JOB_COMPLETION_INDEX', () => {
  const env = notebookEnv({ notebook: 'a.ipynb', sweep: { a: [1, 2, 3] } });
  assert.equal(JSON.parse(env.KBATCH_SWEEP!), [{ a: 1 }, { a: 2 }, { a: 3 }]);
  assert.is(env.KBATCH_PARAMETERS, undefined);
});

/** Runs the entry with a stand-in papermill module that records what it was asked to do. */
function runEntry(
  env: Record<string, string>,
  withPapermill: boolean,
): { status: number | null; stderr: string; calls: unknown[]; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-nb-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const python = spawnSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).stdout.trim();
  // Only python3 on PATH (and sh's own tools), so the image "has" exactly what the test says.
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\nexec ${python} "$@"\n`, { mode: 0o755 });
  const modules = join(dir, 'modules');
  mkdirSync(modules);
  if (withPapermill) {
    writeFileSync(
      join(modules, 'papermill.py'),
      'import json, os\ndef execute_notebook(i, o, parameters, cwd, log_output, progress_bar):\n    open(os.environ["CALLS"], "a").write(json.dumps([i, o, parameters, cwd]) + "\\n")\n',
    );
  }
  const calls = join(dir, 'calls');
  const result = spawnSync('sh', ['-c', notebookCommand()[2]!], {
    cwd: dir,
    encoding: 'utf8',
    env: {
      PATH: `${bin}:/usr/bin:/bin`,
      PYTHONPATH: modules,
      CALLS: calls,
      KBATCH_OUTPUTS_DIR: join(dir, 'out'),
      JUPYTER_IMAGE: 'python:3.12',
      ...env,
    },
  });
  const text = withPapermill ? readFileSync(calls, 'utf8') : '';
  return {
    status: result.status,
    stderr: result.stderr,
    calls: text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line)),
    dir,
  };
}
command('picks the parameter set of its index and names the output after it', () => {
  const env = notebookEnv({ notebook: 'sub/a.ipynb', sweep: { a: [hostile, 2] } });
  const { status, calls, dir } = runEntry({ ...env, JOB_COMPLETION_INDEX: '0' }, true);
  try {
    assert.is(status, 0);
    assert.equal(calls, [['sub/a.ipynb', join(dir, 'out', 'a-0.ipynb'), { a: hostile }, 'sub']]);
    assert.ok(readdirSync(join(dir, 'out')).length === 0, 'the stand-in writes nothing; the directory is made');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
command('the largest sweep accepted still starts: its KBATCH_SWEEP is below the kernel limit on one env string', () => {
  const spec = parseJobSpec({ name: 'nb', notebook: 'a.ipynb', parameters: { big: 'x'.repeat(1100) }, sweep: { a: range(100) } });
  const env = notebookEnv({ notebook: spec.notebook!, parameters: spec.parameters, sweep: spec.sweep });
  assert.ok(env.KBATCH_SWEEP!.length > 100_000, `${env.KBATCH_SWEEP!.length} bytes`);
  const { status, calls, dir } = runEntry({ ...env, JOB_COMPLETION_INDEX: '99' }, true);
  rmSync(dir, { recursive: true, force: true });
  assert.is(status, 0);
  assert.equal((calls[0] as unknown[])[2], { big: 'x'.repeat(1100), a: 99 });
});
command('one run writes the notebook under its own name', () => {
  const { status, calls, dir } = runEntry(notebookEnv({ notebook: 'a.ipynb', parameters: { n: 1.5, none: null } }), true);
  rmSync(dir, { recursive: true, force: true });
  assert.is(status, 0);
  assert.equal(calls, [['a.ipynb', join(dir, 'out', 'a.ipynb'), { n: 1.5, none: null }, null]]);
});
command('without papermill in the image the log says so and the job fails', () => {
  const { status, stderr, dir } = runEntry(notebookEnv({ notebook: 'a.ipynb' }), false);
  rmSync(dir, { recursive: true, force: true });
  assert.is(status, 127);
  assert.match(stderr, 'kbatch: papermill is not installed in image python:3.12: pip install papermill');
});
command.run();

const upstream = suite('papermill commands recognised (upstream API)');
for (const [argv, expected] of [
  [
    ['papermill', 'in.ipynb', 'out.ipynb', '-p', 'n', '3', '-p', 'rate', '0.5', '-p', 'on', 'True', '-r', 'raw', '3', '-p', 'label', 'x'],
    { notebook: 'in.ipynb', output: 'out.ipynb', parameters: { n: 3, rate: 0.5, on: true, raw: '3', label: 'x' }, source: 'command' },
  ],
  [
    ['/opt/conda/bin/python3', '-m', 'papermill', '-k', 'python3', 'a.ipynb', '/outputs/a.ipynb', '--log-output'],
    { notebook: 'a.ipynb', output: '/outputs/a.ipynb', parameters: {}, source: 'command' },
  ],
  [['sh', '-c', 'papermill a.ipynb b.ipynb'], undefined],
  [['papermill', 'a.ipynb'], undefined],
  [['python', 'main.py'], undefined],
] as const) {
  upstream(`${argv.join(' ')}`, () => assert.equal(recognisePapermill([...argv]), expected));
}
upstream.run();

const built = suite('the Job of a notebook sweep');
const settings = { jobTtlSeconds: null, jobExtraEnv: {}, helperImage: 'busybox' };
const user = { name: 'ada', namespace: 'kbatch-ada', groups: [], admin: false, scopes: [], token: undefined } as never;
built('runs papermill, an indexed array, the sets in the Secret and the run in an annotation', () => {
  const spec = parseJobSpec({ name: 'nb', image: 'jupyter/scipy', notebook: 'a.ipynb', parameters: { f: 1 }, sweep: { a: [1, 2, 3] } });
  const { job, secret } = buildJobObjects(spec, user, 'nb-abcde', { settings, profiles: { profiles: {} } as never });
  assert.is(job.spec!.completions, 3);
  assert.is(job.spec!.completionMode, 'Indexed');
  assert.equal(job.spec!.template.spec!.containers[0]!.command, notebookCommand());
  const env = Object.fromEntries(Object.entries(secret.data!).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  assert.equal(JSON.parse(env.KBATCH_SWEEP!), [
    { f: 1, a: 1 },
    { f: 1, a: 2 },
    { f: 1, a: 3 },
  ]);
  assert.is(env.KBATCH_NOTEBOOK, 'a.ipynb');
  assert.is(job.spec!.template.metadata!.annotations![annotations.notebook], undefined);
  const detail = jobDetail(job, []);
  assert.equal(detail.notebook!.runs[2], { index: 2, parameters: { f: 1, a: 3 }, output: 'a-2.ipynb' });
  assert.is(detail.notebook!.source, 'spec');
});
built('a papermill command is shown as a notebook run', () => {
  const spec = parseJobSpec({ name: 'nb', image: 'jupyter/scipy', command: ['papermill', 'a.ipynb', 'out.ipynb', '-p', 'n', '2'] });
  const { job } = buildJobObjects(spec, user, 'nb-abcde', { settings, profiles: { profiles: {} } as never });
  assert.equal(notebookView(job.metadata!.annotations![annotations.notebook]), {
    notebook: 'a.ipynb',
    parameters: { n: 2 },
    source: 'command',
    runs: [{ parameters: { n: 2 }, output: 'out.ipynb' }],
  });
});
built('an annotation that is not a run gives no notebook view rather than a failed show', () => {
  for (const text of ['', 'not json', '{"notebook": 3}', '{"notebook": "a.ipynb", "sweep": {"a": 3}}', 'null'])
    assert.is(notebookView(text), undefined, text);
});
built.run();
