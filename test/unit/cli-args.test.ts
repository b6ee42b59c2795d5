import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../../cli/app.ts';
import { parseArgs, parseDuration, type OptionSpec } from '../../cli/args.ts';
import { UsageError } from '../../cli/errors.ts';

const specs: OptionSpec[] = [
  { name: 'name', short: 'n', type: 'string', help: '' },
  { name: 'env', short: 'e', type: 'string', repeatable: true, help: '' },
  { name: 'follow', short: 'f', aliases: ['stream'], type: 'boolean', help: '' },
  { name: 'url', aliases: ['kbatch-url'], type: 'string', help: '' },
  { name: 'limit', type: 'string', help: '' },
];

function memoryIo(env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  return {
    io: {
      stdout: { write: (t: string) => void (stdout += t), isTTY: false },
      stderr: { write: (t: string) => void (stderr += t), isTTY: false },
      env: { XDG_CONFIG_HOME: '/nonexistent-kbatch-test', ...env },
    },
    out: () => stdout,
    err: () => stderr,
  };
}

const parsing = suite('the argument parser');
parsing('reads long, short and inline values', () => {
  const args = parseArgs(['--name', 'a', '-e', 'X=1', '--env=Y=2', '-n=b', 'pos'], specs);
  assert.is(args.string('name'), 'b');
  assert.equal(args.strings('env'), ['X=1', 'Y=2']);
  assert.equal(args.positionals, ['pos']);
});
parsing('a string option takes the next token even when it starts with a dash', () => {
  assert.is(parseArgs(['--name', '-x'], specs).string('name'), '-x');
});
parsing('booleans: plain, negated, aliased, with an explicit value', () => {
  assert.is(parseArgs(['-f'], specs).flag('follow'), true);
  assert.is(parseArgs(['--stream'], specs).flag('follow'), true);
  assert.is(parseArgs(['--follow', '--no-follow'], specs).flag('follow'), false);
  assert.is(parseArgs(['--follow=false'], specs).flag('follow'), false);
  assert.throws(
    () => parseArgs(['--follow=maybe'], specs),
    (e: unknown) => e instanceof UsageError,
  );
});
parsing('aliases land on the canonical name', () => {
  assert.is(parseArgs(['--kbatch-url', 'http://x/'], specs).string('url'), 'http://x/');
});
parsing('-- ends options', () => {
  assert.equal(parseArgs(['--', '--name', 'x'], specs).positionals, ['--name', 'x']);
});
parsing('unknown options and missing values are usage errors', () => {
  assert.throws(() => parseArgs(['--nope'], specs), /unknown option --nope/);
  assert.throws(() => parseArgs(['-z'], specs), /unknown option -z/);
  assert.throws(() => parseArgs(['--name'], specs), /--name needs a value/);
  assert.throws(() => parseArgs(['--no-name'], specs), /unknown option --no-name/);
});
parsing('integers are checked against their bounds', () => {
  assert.is(parseArgs(['--limit', '20'], specs).integer('limit', 1, 500), 20);
  assert.throws(() => parseArgs(['--limit', 'ten'], specs).integer('limit', 1, 500), /not an integer/);
  assert.throws(() => parseArgs(['--limit', '0'], specs).integer('limit', 1, 500), /between 1 and 500/);
});
parsing.run();

const durations = suite('durations');
for (const [raw, seconds] of [
  ['90', 90],
  ['90s', 90],
  ['15m', 900],
  ['2h', 7200],
  ['1d', 86400],
  ['1h30m', 5400],
  ['1.5h', 5400],
] as const) {
  durations(`${raw} is ${seconds}s`, () => assert.is(parseDuration(raw, '--timeout'), seconds));
}
for (const bad of ['', 'soon', '5x', '1h 30m', '-5m']) {
  durations(`"${bad}" is a usage error`, () =>
    assert.throws(
      () => parseDuration(bad, '--timeout'),
      (e: unknown) => e instanceof UsageError,
    ),
  );
}
durations.run();

const commands = suite('command dispatch and exit codes');
commands('no arguments prints the top-level help and exits 0', async () => {
  const m = memoryIo();
  assert.is(await runCli([], m.io), 0);
  assert.match(m.out(), /Usage: kbatch COMMAND/);
  assert.match(m.out(), /configure/);
});
for (const argv of [
  ['--help'],
  ['job', '-h'],
  ['job', 'submit', '--help'],
  ['job', 'logs', '-h'],
  ['job', 'list', '--help'],
  ['job', 'show', '-h'],
  ['job', 'delete', '-h'],
  ['job', 'wait', '-h'],
  ['profiles', '-h'],
  ['configure', '--help'],
  ['login', '--help'],
  ['version', '--help'],
]) {
  commands(`kbatch ${argv.join(' ')} prints help and exits 0`, async () => {
    const m = memoryIo();
    assert.is(await runCli(argv, m.io), 0);
    assert.match(m.out(), /^Usage: kbatch /);
    assert.is(m.err(), '');
  });
}
commands('help does not need a URL or a valid rest of the line', async () => {
  const m = memoryIo();
  assert.is(await runCli(['job', 'show', '--help'], m.io), 0);
});
commands('--version prints the client version', async () => {
  const m = memoryIo();
  assert.is(await runCli(['--version'], m.io), 0);
  assert.match(m.out(), /^kbatch \d+\.\d+\.\d+/);
});
const usageCases: [string, string[], RegExp][] = [
  ['an unknown command, with the nearest one', ['jbo'], /unknown command "jbo" \(did you mean "job"\?\)/],
  ['an unknown flag, with the nearest one', ['job', 'submit', '--imag', 'x'], /unknown option --imag \(did you mean --image\?\)/],
  ['an unknown subcommand', ['job', 'frobnicate'], /unknown command "job frobnicate"/],
  ['an unknown flag', ['job', 'list', '--bogus'], /unknown option --bogus/],
  ['a missing job name', ['job', 'show'], /missing NAME/],
  ['an extra argument', ['job', 'show', 'a', 'b'], /unexpected argument "b"/],
  ['submit without --name', ['job', 'submit', '--image', 'x'], /missing --name/],
  ['submit without --image or --profile', ['job', 'submit', '--name', 'x'], /missing --image/],
  ['bad JSON in --command', ['job', 'submit', '-n', 'x', '--image', 'x', '--command', 'python main.py'], /--command: not valid JSON/],
  ['a JSON non-list in --args', ['job', 'submit', '-n', 'x', '--image', 'x', '--args', '{"a":1}'], /--args must be a list of strings/],
  ['a bad --env', ['job', 'submit', '-n', 'x', '--image', 'x', '-e', 'NOEQUALS'], /--env: expected KEY=VALUE/],
  ['a bad --output', ['job', 'list', '-o', 'xml'], /--output: "xml" is not one of/],
  ['a bad --timeout', ['job', 'wait', 'x', '--timeout', 'soon'], /is not a duration/],
  ['no URL anywhere', ['job', 'list'], /no kbatch URL configured/],
  ['a URL that is not http', ['job', 'list', '--url', 'ftp://x/'], /must be an http/],
];
for (const [what, argv, message] of usageCases) {
  commands(`${what} exits 2 with a one-line message`, async () => {
    const m = memoryIo();
    assert.is(await runCli(argv, m.io), 2);
    assert.match(m.err(), message);
    assert.match(m.err(), /^kbatch: /);
    assert.not.match(m.err(), /\n\s+at /, 'no stack trace');
    assert.is(m.out(), '');
  });
}
commands('global flags may come before the command', async () => {
  const m = memoryIo();
  assert.is(await runCli(['--url', 'ftp://x/', 'job', 'list'], m.io), 2);
  assert.match(m.err(), /must be an http/);
});
commands.run();
