import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseArgs } from '../../cli/args.ts';
import { submitCommand } from '../../cli/commands/submit.ts';
import { globalOptions } from '../../cli/command.ts';
import { UsageError } from '../../cli/errors.ts';
import { buildSubmitPlan, parseEnvFlags, readJobFile } from '../../cli/job-spec.ts';
import { parseJobSpec } from '../../lib/jobs/spec.ts';

const args = (...argv: string[]) => parseArgs(argv, [...submitCommand.options, ...globalOptions]);

function yamlFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'kbatch-cli-spec-')), 'job.yaml');
  writeFileSync(path, text);
  return path;
}

const flags = suite('job submit flags become a JobSpec');
flags('the upstream flags', () => {
  const plan = buildSubmitPlan(
    args(
      '-n',
      'hello',
      '--image',
      'python:3.12',
      '--command',
      '["python","main.py"]',
      '--args',
      '["--epochs", "3"]',
      '-e',
      '{"A":"1","B":2}',
      '-c',
      './src',
      '-p',
      'small',
    ),
  );
  assert.equal(plan.spec, {
    name: 'hello',
    image: 'python:3.12',
    profile: 'small',
    command: ['python', 'main.py'],
    args: ['--epochs', '3'],
    env: { A: '1', B: '2' },
  });
  assert.is(plan.code, './src');
});
flags('our extra flags map to the server fields', () => {
  const plan = buildSubmitPlan(
    args(
      '-n',
      'arr',
      '--image',
      'x',
      '--cpu',
      '2',
      '--memory',
      '4Gi',
      '--gpu',
      '1',
      '--array',
      '10',
      '--parallelism',
      '3',
      '--retries',
      '2',
      '--timeout',
      '2h',
      '--ttl',
      '600',
      '--label',
      'team=ml',
      '-l',
      'exp=7',
    ),
  );
  assert.equal(plan.spec, {
    name: 'arr',
    image: 'x',
    resources: { requests: { cpu: '2', memory: '4Gi', 'nvidia.com/gpu': '1' }, limits: { cpu: '2', memory: '4Gi', 'nvidia.com/gpu': '1' } },
    labels: { team: 'ml', exp: '7' },
    completions: 10,
    parallelism: 3,
    backoffLimit: 2,
    activeDeadlineSeconds: 7200,
    ttlSecondsAfterFinished: 600,
  });
});
flags('every spec the CLI builds passes the server validator', () => {
  const plan = buildSubmitPlan(
    args(
      '-n',
      'arr',
      '--image',
      'x',
      '--cpu',
      '500m',
      '--memory',
      '1Gi',
      '--array',
      '4',
      '--retries',
      '1',
      '--timeout',
      '90m',
      '--ttl',
      '1d',
      '-l',
      'a=b',
      '-e',
      'X=1',
    ),
  );
  assert.equal(parseJobSpec(JSON.parse(JSON.stringify(plan.spec))), plan.spec);
});
flags('--env takes KEY=VALUE (repeatable, = allowed in values) and JSON, later wins', () => {
  assert.equal(parseEnvFlags(['A=1', '{"B":"2","A":"0"}', 'C=x=y', 'A=3']), { A: '3', B: '2', C: 'x=y' });
  assert.equal(parseEnvFlags(['EMPTY=']), { EMPTY: '' });
});
flags('a profile alone is enough: it may set the image', () => {
  assert.equal(buildSubmitPlan(args('-n', 'g', '-p', 'gpu')).spec, { name: 'g', profile: 'gpu' });
});
flags('bad numbers are usage errors', () => {
  assert.throws(
    () => buildSubmitPlan(args('-n', 'a', '--image', 'x', '--array', 'many')),
    (e: unknown) => e instanceof UsageError,
  );
  assert.throws(
    () => buildSubmitPlan(args('-n', 'a', '--image', 'x', '--retries', '-1')),
    (e: unknown) => e instanceof UsageError,
  );
  assert.throws(
    () => buildSubmitPlan(args('-n', 'a', '--image', 'x', '--timeout', 'forever')),
    (e: unknown) => e instanceof UsageError,
  );
});
flags.run();

const files = suite('a -f job file');
files('holds upstream keys; flags override it; env and labels merge', () => {
  const path = yamlFile(`
name: my-job
image: python:3.12
command: [sh, script.sh]
args: [python, x.py]
code: script.sh
profile: small
description: ignored
env: {SAS_TOKEN: abc, SHARED: file}
labels: {team: ml}
`);
  const plan = buildSubmitPlan(args('-f', path, '--image', 'python:3.13', '-e', 'SHARED=flag', '-l', 'exp=1'), readJobFile(path));
  assert.equal(plan.spec, {
    name: 'my-job',
    image: 'python:3.13',
    profile: 'small',
    command: ['sh', 'script.sh'],
    args: ['python', 'x.py'],
    env: { SAS_TOKEN: 'abc', SHARED: 'flag' },
    labels: { team: 'ml', exp: '1' },
  });
  assert.is(plan.code, join(dirname(path), 'script.sh'), 'code: is relative to the YAML file');
});
files('accepts our extra keys and their short aliases', () => {
  const path = yamlFile(`
name: big
image: x
cpu: 2
memory: 8Gi
resources: {requests: {ephemeral-storage: 1Gi}}
array: 5
parallelism: 2
retries: 1
timeout: 1h
ttl: 300
tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
`);
  const plan = buildSubmitPlan(args(), readJobFile(path));
  assert.equal(plan.spec, {
    name: 'big',
    image: 'x',
    resources: { requests: { 'ephemeral-storage': '1Gi', cpu: '2', memory: '8Gi' }, limits: { cpu: '2', memory: '8Gi' } },
    completions: 5,
    parallelism: 2,
    backoffLimit: 1,
    activeDeadlineSeconds: 3600,
    ttlSecondsAfterFinished: 300,
    tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
  });
});
files('unknown keys and bad shapes are usage errors naming the problem', () => {
  assert.throws(() => readJobFile(yamlFile('name: a\nimgae: x\n')), /unknown key "imgae"/);
  assert.throws(() => readJobFile(yamlFile('- a\n- b\n')), /must be a mapping/);
  assert.throws(() => readJobFile(yamlFile('name: [unclosed\n')), /not valid YAML/);
  assert.throws(() => readJobFile('/no/such/job.yaml'), /cannot read/);
  assert.throws(
    () => buildSubmitPlan(args(), readJobFile(yamlFile('name: a\nimage: x\ncommand: python main.py\n'))),
    /command must be a list/,
  );
});
files.run();
