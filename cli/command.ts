import type { Writable } from 'node:stream';
import { parseArgs, type OptionSpec, type ParsedArgs } from './args.ts';
import { KbatchApi } from './api.ts';
import type { FetchLike } from './client.ts';
import { configPath, readConfigFile, resolveConnection, type Connection, type Env } from './config.ts';
import { UsageError } from './errors.ts';
import { closest } from './suggest.ts';

export interface Output {
  write(text: string): void;
  isTTY: boolean;
}

/** Everything a command touches outside itself, so tests can run commands in-process. */
export interface CliIo {
  stdout: Output;
  stderr: Output;
  env: Env;
  fetch?: FetchLike;
  /** stdout as a byte stream, for binary output with backpressure (`job outputs NAME PATH --dest -`). */
  stdoutStream?: Writable;
  /** A terminal to ask on (`job delete --all`); absent or not a TTY means nobody can answer. */
  stdin?: { isTTY: boolean; question(prompt: string): Promise<string> };
}

export interface CommandContext {
  args: ParsedArgs;
  io: CliIo;
  out(text: string): void;
  err(text: string): void;
  /** URL and token from flags, environment and config file; a usage error when there is no URL. */
  connection(): Connection;
  /** The typed API of the configured server: every call a command makes goes through it. */
  api(): KbatchApi;
}

export interface Positional {
  name: string;
  optional?: boolean;
  /** Takes every remaining argument (`job delete NAME...`); only the last positional may. */
  variadic?: boolean;
  /** A flag that may give it instead, as the founding usage does: `jobs show --job-id=NAME`. */
  flag?: string;
}

export interface Command {
  kind: 'command';
  name: string;
  aliases?: string[];
  summary: string;
  description?: string;
  positionals?: Positional[];
  options: OptionSpec[];
  examples?: string[];
  run(ctx: CommandContext): Promise<number>;
}

export interface Group {
  kind: 'group';
  name: string;
  /** `jobs` for `job`: the founding usage writes `kbatch jobs list`. */
  aliases?: string[];
  summary: string;
  description?: string;
  children: (Command | Group)[];
}

/** Accepted by every command, before or after its name; upstream spells the URL flag --kbatch-url. */
export const globalOptions: OptionSpec[] = [
  { name: 'url', aliases: ['kbatch-url'], type: 'string', value: 'URL', help: 'kbatch URL (default: $KBATCH_URL, then the config file)' },
  { name: 'token', type: 'string', value: 'TOKEN', help: 'JupyterHub API token (default: $JUPYTERHUB_API_TOKEN, then the config file)' },
  { name: 'help', short: 'h', type: 'boolean', help: 'show this help' },
];

export const outputOption = (formats: string[], fallback: string): OptionSpec => ({
  name: 'output',
  short: 'o',
  type: 'string',
  value: 'FORMAT',
  help: `output format: ${formats.join(', ')} (default: ${fallback})`,
});

function optionLabel(option: OptionSpec): string {
  const names = [...(option.short ? [`-${option.short}`] : []), `--${option.name}`, ...(option.aliases ?? []).map((a) => `--${a}`)];
  return names.join(', ') + (option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : '');
}

function helpWidth(options: OptionSpec[]): number {
  return Math.min(34, Math.max(...options.map((o) => optionLabel(o).length)) + 2);
}

function optionLines(options: OptionSpec[], width = helpWidth(options)): string {
  const labels = options.map(optionLabel);
  return options
    .map((option, i) => {
      const label = labels[i]!;
      const help = option.help + (option.repeatable ? ' (repeatable)' : '');
      return label.length + 2 > width ? `  ${label}\n  ${' '.repeat(width)}${help}` : `  ${label.padEnd(width)}${help}`;
    })
    .join('\n');
}

function positionalUsage(positionals: Positional[] = []): string {
  return positionals.map((p) => (p.optional ? `[${p.name}${p.variadic ? '...' : ''}]` : `${p.name}${p.variadic ? '...' : ''}`)).join(' ');
}

export function commandHelp(path: string[], command: Command): string {
  const positionals = positionalUsage(command.positionals);
  const lines = [
    `Usage: kbatch ${path.join(' ')}${positionals ? ` ${positionals}` : ''} [options]`,
    '',
    command.description ?? command.summary,
  ];
  if (command.aliases?.length) lines.push('', `Alias: kbatch ${[...path.slice(0, -1), command.aliases[0]].join(' ')}`);
  const width = helpWidth([...command.options, ...globalOptions]);
  if (command.options.length) lines.push('', 'Options:', optionLines(command.options, width));
  lines.push('', 'Global options:', optionLines(globalOptions, width));
  if (command.examples?.length) lines.push('', 'Examples:', ...command.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}

export function groupHelp(path: string[], group: Group): string {
  // Groups show their aliases (`job, jobs`): the founding usage says `kbatch jobs list`.
  const label = (c: Command | Group) => (c.kind === 'group' && c.aliases?.length ? [c.name, ...c.aliases].join(', ') : c.name);
  const width = Math.max(...group.children.map((c) => label(c).length)) + 3;
  const prefix = ['kbatch', ...path].join(' ');
  return (
    [
      `Usage: ${prefix} COMMAND [options]`,
      '',
      group.description ?? group.summary,
      '',
      'Commands:',
      ...group.children.map((c) => `  ${label(c).padEnd(width)}${c.summary}`),
      '',
      'Global options:',
      optionLines(globalOptions),
      '',
      `Run "${prefix} COMMAND --help" for a command's options.`,
    ].join('\n') + '\n'
  );
}

/** The stderr notice for each reconnect of a follow or a wait; the command goes on by itself. */
export function reconnectNotice(ctx: CommandContext, what: string): (attempt: number, reason: string) => void {
  return (attempt, reason) => ctx.err(`kbatch: ${what} interrupted (${reason}); resuming (attempt ${attempt})\n`);
}

const globalValueFlags = new Set(['--url', '--kbatch-url', '--token']);

function findChild(group: Group, name: string): Command | Group | undefined {
  return group.children.find((c) => c.name === name || c.aliases?.includes(name));
}

function makeContext(args: ParsedArgs, io: CliIo): CommandContext {
  let connection: Connection | undefined;
  const ctx: CommandContext = {
    args,
    io,
    out: (text) => io.stdout.write(text),
    err: (text) => io.stderr.write(text),
    connection() {
      if (connection) return connection;
      const file = readConfigFile(configPath(io.env));
      connection = resolveConnection({ url: args.string('url'), token: args.string('token') }, io.env, file);
      if (!connection) throw new UsageError('no kbatch URL configured', 'run kbatch configure --url URL, set $KBATCH_URL, or pass --url');
      return connection;
    },
    api() {
      const { url, token } = ctx.connection();
      return KbatchApi.at(url, token, io.fetch);
    },
  };
  return ctx;
}

/**
 * Walks the command tree: global flags may come before the command name (`kbatch --url X job
 * list`); once a command is found, the rest is parsed with its own options plus the global ones.
 */
export async function dispatch(root: Group, argv: string[], io: CliIo, onVersion: () => Promise<number>): Promise<number> {
  let node: Command | Group = root;
  const path: string[] = [];
  const carried: string[] = [];
  let i = 0;
  while (node.kind === 'group') {
    const token = argv[i];
    if (token === undefined) {
      io.stdout.write(groupHelp(path, node));
      return 0;
    }
    i++;
    if (token === '-h' || token === '--help') {
      io.stdout.write(groupHelp(path, node));
      return 0;
    }
    if (token === '--version' && node === root) return onVersion();
    const flag = token.split('=')[0]!;
    if (globalValueFlags.has(flag)) {
      carried.push(token);
      if (!token.includes('=')) {
        if (argv[i] === undefined) throw new UsageError(`${token} needs a value`);
        carried.push(argv[i++]!);
      }
      continue;
    }
    if (token.startsWith('-'))
      throw new UsageError(
        `unknown option ${flag}${path.length ? ` for kbatch ${path.join(' ')}` : ''}`,
        `run kbatch ${[...path, '--help'].join(' ')}`,
      );
    const child = findChild(node, token);
    if (!child) {
      const guess = closest(
        token,
        node.children.flatMap((c) => [c.name, ...(c.aliases ?? [])]),
      );
      throw new UsageError(
        `unknown command "${[...path, token].join(' ')}"${guess ? ` (did you mean "${[...path, guess].join(' ')}"?)` : ''}`,
        `available: ${node.children.map((c) => c.name).join(', ')}; run kbatch ${[...path, '--help'].join(' ')}`,
      );
    }
    path.push(child.name);
    node = child;
  }
  const command: Command = node;
  let args: ParsedArgs;
  try {
    args = parseArgs([...carried, ...argv.slice(i)], [...command.options, ...globalOptions]);
  } catch (error) {
    if (error instanceof UsageError && !error.hint) throw new UsageError(error.message, `run kbatch ${path.join(' ')} --help`);
    throw error;
  }
  if (args.flag('help')) {
    io.stdout.write(commandHelp(path, command));
    return 0;
  }
  const expected = command.positionals ?? [];
  expected.forEach((p, index) => {
    const viaFlag = p.flag ? args.string(p.flag) : undefined;
    if (viaFlag === undefined) return;
    if (args.positionals[index] !== undefined && args.positionals[index] !== viaFlag)
      throw new UsageError(`give ${p.name} once: as an argument or with --${p.flag}`);
    args.positionals[index] = viaFlag;
  });
  const missing = expected.filter((p, index) => !p.optional && args.positionals[index] === undefined);
  if (missing.length)
    throw new UsageError(
      `missing ${missing.map((p) => p.name).join(' ')}`,
      `usage: kbatch ${path.join(' ')} ${positionalUsage(expected)} [options]; run kbatch ${path.join(' ')} --help`,
    );
  if (args.positionals.length > expected.length && !expected[expected.length - 1]?.variadic) {
    throw new UsageError(`unexpected argument "${args.positionals[expected.length]}"`, `run kbatch ${path.join(' ')} --help`);
  }
  try {
    return await command.run(makeContext(args, io));
  } catch (error) {
    // A usage problem found by the command itself still points at that command's help.
    if (error instanceof UsageError && !error.hint) throw new UsageError(error.message, `run kbatch ${path.join(' ')} --help`);
    throw error;
  }
}
