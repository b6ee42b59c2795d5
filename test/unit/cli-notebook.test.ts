import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseArgs } from '../../cli/args.ts';
import { jobDetailText } from '../../cli/commands/jobs.ts';
import { submitCommand } from '../../cli/commands/submit.ts';
import { globalOptions } from '../../cli/command.ts';
import { UsageError } from '../../cli/errors.ts';
import { buildSubmitPlan, parseParameterFlags, parseSweepFlags, readJobFile } from '../../cli/job-spec.ts';
import { buildJobObjects } from '../../lib/k8s/builders.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';
import { jobDetail } from '../../lib/jobs/views.ts';

const args = (...argv: string[]) => parseArgs(argv, [...submitCommand.options, ...globalOptions]);

const typing = suite('notebook parameters typed on the command line');
for (const [raw, value] of [
  ['n=3', 3],
  ['rate=0.5', 0.5],
  ['big=1e3', 1000],
  ['on=true', true],
  ['off=false', false],
  ['none=null', null],
  ['cfg={"a": [1, 2]}', { a: [1, 2] }],
  ['xs=[1, "two"]', [1, 'two']],
  ['label=run one', 'run one'],
  ['quoted="3"', '3'],
  ['empty=', ''],
  ['eq=a=b', 'a=b'],
  ['tag:="1.0"', '1.0'],
  ['n:=3', 3],
] as const) {
  typing(`${raw}`, () => assert.equal(Object.values(parseParameterFlags([raw]))[0], value));
}
typing('NAME:= refuses text that is not JSON', () =>
  assert.throws(
    () => parseParameterFlags(['a:=nope']),
    (e: Error) => e instanceof UsageError && /not valid JSON/.test(e.message),
  ),
);
typing('a value without a name is refused', () =>
  assert.throws(
    () => parseParameterFlags(['=3']),
    (e: Error) => e instanceof UsageError,
  ),
);
typing('sweeps split on commas, each value typed; a JSON list keeps its commas', () => {
  assert.equal(parseSweepFlags(['seed=1,2,3', 'mode=fast,slow', 'shape=[[1,2],[3,4]]', 'on:=[true,false]']), {
    seed: [1, 2, 3],
    mode: ['fast', 'slow'],
    shape: [
      [1, 2],
      [3, 4],
    ],
    on: [true, false],
  });
});
typing.run();

const submit = suite('job submit --notebook');
const dir = mkdtempSync(join(tmpdir(), 'kbatch-cli-nb-'));
mkdirSync(join(dir, 'project', 'notebooks'), { recursive: true });
writeFileSync(join(dir, 'project', 'notebooks', 'analysis.ipynb'), '{}');
submit("uploads the notebook's directory (as /code/DIR); -p NAME=VALUE is a parameter, -p NAME still the profile", () => {
  const plan = buildSubmitPlan(
    args(
      '-n',
      'nb',
      '--image',
      'x',
      '--notebook',
      join(dir, 'project', 'notebooks', 'analysis.ipynb'),
      '-p',
      'alpha=0.5',
      '-p',
      'gpu',
      '--parameter',
      'label=a b',
      '--sweep',
      'seed=1,2,3',
    ),
  );
  assert.equal(plan.spec, {
    name: 'nb',
    image: 'x',
    profile: 'gpu',
    notebook: 'notebooks/analysis.ipynb',
    parameters: { alpha: 0.5, label: 'a b' },
    sweep: { seed: [1, 2, 3] },
  });
  assert.is(plan.code, join(dir, 'project', 'notebooks'));
  // The server accepts what the CLI sends.
  assert.is(parseJobSpec(plan.spec).completions, 3);
});
submit('with --code DIR the notebook is its path inside DIR', () => {
  const plan = buildSubmitPlan(
    args('-n', 'nb', '--image', 'x', '--code', join(dir, 'project'), '--notebook', join(dir, 'project', 'notebooks', 'analysis.ipynb')),
  );
  assert.is(plan.spec.notebook, 'project/notebooks/analysis.ipynb');
  assert.is(plan.code, join(dir, 'project'));
});
submit('refuses parameters without a notebook, and a command with one', () => {
  assert.throws(
    () => buildSubmitPlan(args('-n', 'nb', '--image', 'x', '-p', 'a=1', '--command', '["true"]')),
    (e: Error) => /need --notebook/.test(e.message),
  );
  assert.throws(
    () =>
      buildSubmitPlan(
        args('-n', 'nb', '--image', 'x', '--notebook', join(dir, 'project', 'notebooks', 'analysis.ipynb'), '--command', '["true"]'),
      ),
    (e: Error) => /no --command/.test(e.message),
  );
});
submit('a notebook that is not here, without --code, is refused before anything is sent', () => {
  assert.throws(
    () => buildSubmitPlan(args('-n', 'nb', '--image', 'x', '--notebook', join(dir, 'missing.ipynb'))),
    (e: Error) => /does not exist/.test(e.message),
  );
});
submit('a job file names the notebook next to it, with parameters and a sweep; flags add to them', () => {
  const yaml = join(dir, 'project', 'notebooks', 'job.yaml');
  writeFileSync(yaml, 'name: nb\nimage: x\nnotebook: analysis.ipynb\nparameters:\n  alpha: 0.5\n  cfg: {}\nsweep:\n  seed: [1, 2]\n');
  const plan = buildSubmitPlan(args('-p', 'beta=true'), readJobFile(yaml));
  assert.equal(plan.spec, {
    name: 'nb',
    image: 'x',
    notebook: 'notebooks/analysis.ipynb',
    parameters: { alpha: 0.5, cfg: {}, beta: true },
    sweep: { seed: [1, 2] },
  });
  assert.is(plan.code, join(dir, 'project', 'notebooks'));
});
submit.after(() => rmSync(dir, { recursive: true, force: true }));
submit.run();

const show = suite('job show of a notebook sweep');
show('shows the notebook, the fixed parameters, the sweep and each index with its output', () => {
  const spec = parseJobSpec({
    name: 'nb',
    image: 'jupyter/scipy',
    notebook: 'analysis.ipynb',
    parameters: { alpha: 0.5 },
    sweep: { seed: [1, 2], mode: ['a', 'b'] },
  });
  const { job } = buildJobObjects(spec, { name: 'ada', namespace: 'kbatch-ada' } as never, 'nb-abcde', {
    settings: { jobTtlSeconds: null, jobExtraEnv: {}, helperImage: 'b' },
    profiles: {} as never,
  });
  const text = jobDetailText(jobDetail(job, []));
  assert.match(text, /^Command: +papermill \(kbatch notebook entry\)$/m);
  assert.match(text, /^Notebook: +analysis.ipynb$/m);
  assert.match(text, /^Parameters: +alpha=0.5$/m);
  assert.match(text, /^Sweep: +seed in \[1,2\], mode in \["a","b"\]$/m);
  assert.match(text, /^ +INDEX +PARAMETERS +OUTPUT$/m);
  assert.match(text, /^ +3 +alpha=0.5, seed=2, mode="b" +analysis-3.ipynb$/m);
});
show.run();
