import { mkdir } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import type { OutputList } from '../../lib/contract.ts';
import { outputOption, reconnectNotice, type Command, type CommandContext } from '../command.ts';
import { downloadArchive, downloadFile, PartFile, StreamSink, type ProgressListener } from '../download.ts';
import { CliError, UsageError } from '../errors.ts';
import { humanBytes, parseOutputFormat, serialize, table } from '../format.ts';
import { onInterrupt } from '../interrupt.ts';
import { StatusLine } from '../status-line.ts';

/** Makes DEST (and its parents) unless it exists; a clear error when it is not a directory. */
async function destination(dir: string): Promise<string> {
  const absolute = resolve(dir);
  try {
    await mkdir(absolute, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new UsageError(`--dest ${dir} is not a directory`);
    throw new CliError(`cannot create ${absolute}: ${(error as Error).message}`);
  }
  return absolute;
}

/** `2026-11-26T03:10:05Z`: the listing's time to the second, in UTC like the server's. */
function shortTime(iso: string): string {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : new Date(time).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The human listing: PATH SIZE MODIFIED, then one line with the count and the total. */
export function outputsTable(list: OutputList): string {
  const rows = list.files.map((file) => [file.path, humanBytes(file.size), shortTime(file.modified)]);
  const count = `${list.files.length} file${list.files.length === 1 ? '' : 's'}, ${humanBytes(list.totalBytes)}`;
  return `${table(['PATH', 'SIZE', 'MODIFIED'], rows)}${count}\n`;
}

function noOutputs(name: string): CliError {
  return new CliError(
    `job ${name} has no outputs`,
    1,
    'a job keeps files by writing them under $KBATCH_OUTPUTS_DIR (/outputs); they may also have been deleted (kbatch job delete --outputs)',
  );
}

/**
 * `downloading x: 12.3 MiB of 40.0 MiB (31%), 5.2 MiB/s` on a terminal, redrawn at most five times
 * a second; nothing elsewhere. The rate counts this run's bytes only (a resumed file's head was not
 * transferred now).
 */
export function progressText(what: string, bytes: number, total: number | undefined, startBytes: number, seconds: number): string {
  const amount =
    total !== undefined
      ? `${humanBytes(bytes)} of ${humanBytes(total)}${total > 0 ? ` (${Math.floor((bytes / total) * 100)}%)` : ''}`
      : humanBytes(bytes);
  const rate = seconds > 0.5 ? `, ${humanBytes(Math.max(0, bytes - startBytes) / seconds)}/s` : '';
  return `${what}: ${amount}${rate}`;
}

function progressLine(ctx: CommandContext, what: string): { listener: ProgressListener; line: StatusLine } {
  const line = new StatusLine(ctx.io.stderr);
  const started = Date.now();
  let startBytes: number | undefined;
  let drawn = 0;
  const listener: ProgressListener = (bytes, total) => {
    if (!line.active) return;
    startBytes ??= bytes;
    const now = Date.now();
    if (now - drawn < 200 && bytes !== total) return;
    drawn = now;
    line.update(progressText(what, bytes, total, startBytes, (now - started) / 1000));
  };
  return { listener, line };
}

export const outputsCommand: Command = {
  kind: 'command',
  name: 'outputs',
  summary: 'List or download the files a job wrote to its outputs directory (they stay after the job is deleted).',
  description: [
    'List or download the files a job wrote under $KBATCH_OUTPUTS_DIR (/outputs). Outputs outlive the job:',
    "they stay after it ends or is deleted, until kbatch job delete NAME --outputs (or the admin's retention) removes them.",
    '',
    '  kbatch job outputs NAME --list       list them: PATH, SIZE, MODIFIED (-o json for scripts)',
    '  kbatch job outputs NAME PATH         download one file to ./<its name> (--dest DIR, or --dest - for stdout);',
    '                                       it is written to <name>.part and renamed when complete; a dropped',
    '                                       connection resumes by itself, and running the command again resumes a .part',
    '  kbatch job outputs NAME              download every file into ./NAME/ (or --dest DIR), unpacked as it',
    '                                       streams; only files and directories are written, never outside DIR',
  ].join('\n'),
  positionals: [{ name: 'NAME' }, { name: 'PATH', optional: true }],
  options: [
    { name: 'list', type: 'boolean', help: 'list the files instead of downloading them' },
    {
      name: 'dest',
      short: 'd',
      type: 'string',
      value: 'DIR',
      help: 'where to save: a directory (default: . for PATH, ./NAME/ for all), or - for stdout (PATH only)',
    },
    outputOption(['table', 'json'], 'table'),
  ],
  examples: [
    'kbatch job outputs sweep-x7k2p --list',
    'kbatch job outputs sweep-x7k2p output-1.ipynb',
    'kbatch job outputs sweep-x7k2p results/metrics.csv --dest - | head',
    'kbatch job outputs sweep-x7k2p --dest ./results',
  ],
  async run(ctx) {
    const [name, path] = ctx.args.positionals as [string, string | undefined];
    const rawFormat = ctx.args.string('output');
    const format = parseOutputFormat(rawFormat, ['table', 'json'], 'table');
    const listing = ctx.args.flag('list') || rawFormat !== undefined;
    const dest = ctx.args.string('dest');
    if (listing && path !== undefined) throw new UsageError('--list and -o list every output; drop PATH (or drop --list to download it)');
    if (listing && dest !== undefined) throw new UsageError('--dest is where downloads go; --list downloads nothing');
    const api = ctx.api();

    if (listing) {
      const list = await api.listOutputs(name);
      if (format === 'json') ctx.out(serialize(list, 'json'));
      else if (!list.files.length) ctx.err(`Job ${name} has no outputs.\n`);
      else ctx.out(outputsTable(list));
      return 0;
    }

    if (path !== undefined) {
      const file = posix.basename(path);
      if (!file || file === '.' || file === '..') throw new UsageError(`PATH "${path}" names no file`);
      const toStdout = dest === '-';
      if (toStdout && !ctx.io.stdoutStream) throw new UsageError('--dest - needs a stdout to write bytes to');
      const target = toStdout ? undefined : join(await destination(dest ?? '.'), file);
      const sink = target ? new PartFile(target) : new StreamSink(ctx.io.stdoutStream!);
      const { listener, line } = progressLine(ctx, `downloading ${path}`);
      const release = onInterrupt(
        target ? `kbatch: download stopped; the partial file ${target}.part is kept\nhint: run the same command again to resume\n` : '',
      );
      let bytes: number;
      try {
        bytes = await downloadFile(api, name, path, sink, {
          progress: listener,
          notice: (text) => {
            line.clear();
            ctx.err(`kbatch: ${text}\n`);
          },
          onReconnect: (attempt, reason) => {
            line.clear();
            reconnectNotice(ctx, 'download')(attempt, reason);
          },
        });
      } finally {
        line.clear();
        release();
      }
      if (target) ctx.out(`downloaded ${path} (${humanBytes(bytes)}) to ${target}\n`);
      return 0;
    }

    if (dest === '-') throw new UsageError('--dest - writes one file to stdout; name its PATH (kbatch job outputs NAME --list shows them)');
    // The listing first: a job with no outputs says so instead of unpacking an empty archive, and
    // its total gives the progress line an end.
    const list = await api.listOutputs(name);
    if (!list.files.length) throw noOutputs(name);
    const directory = await destination(dest ?? name);
    const { listener, line } = progressLine(ctx, `downloading the outputs of ${name}`);
    const release = onInterrupt(`kbatch: download stopped; the files already complete are in ${directory}\n`);
    let summary;
    try {
      const say = (text: string) => {
        line.clear();
        ctx.err(`kbatch: ${text}\n`);
      };
      summary = await downloadArchive(api, name, directory, {
        files: list.files,
        progress: listener,
        warn: say,
        notice: say,
        onReconnect: (attempt, reason) => {
          line.clear();
          reconnectNotice(ctx, 'download')(attempt, reason);
        },
      });
    } finally {
      line.clear();
      release();
    }
    ctx.out(`downloaded ${summary.files} file${summary.files === 1 ? '' : 's'} (${humanBytes(summary.bytes)}) to ${directory}\n`);
    if (summary.refused)
      throw new CliError(
        `${summary.refused} entr${summary.refused === 1 ? 'y was' : 'ies were'} refused (unsafe names, above); the other files were saved`,
      );
    return 0;
  },
};
