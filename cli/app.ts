import { dispatch, type CliIo, type Group } from './command.ts';
import { configureCommand } from './commands/configure.ts';
import { deleteCommand, listCommand, logsCommand, showCommand, waitCommand } from './commands/jobs.ts';
import { profilesCommand } from './commands/profiles.ts';
import { submitCommand } from './commands/submit.ts';
import { printVersion, versionCommand } from './commands/version.ts';
import { describeError, UsageError } from './errors.ts';

export const commandTree: Group = {
  kind: 'group',
  name: 'kbatch',
  summary: 'kbatch controls batch jobs',
  description: 'kbatch controls batch jobs: submit them to Kubernetes from JupyterHub, follow them, fetch their logs.',
  children: [
    configureCommand,
    {
      kind: 'group',
      name: 'job',
      summary: 'Manage kbatch jobs.',
      children: [submitCommand, listCommand, showCommand, logsCommand, waitCommand, deleteCommand],
    },
    profilesCommand,
    versionCommand,
  ],
};

/** Runs one command line; returns the exit code. Errors become `kbatch: message` lines, never stack traces. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(commandTree, argv, io, () => printVersion(io));
  } catch (error) {
    const { message, hint, exitCode } = describeError(error);
    io.stderr.write(`kbatch: ${message}\n`);
    if (hint) io.stderr.write(`hint: ${hint}\n`);
    else if (error instanceof UsageError) io.stderr.write('hint: run kbatch --help\n');
    if (io.env.KBATCH_DEBUG && error instanceof Error && !(error instanceof UsageError)) io.stderr.write(`${error.stack}\n`);
    return exitCode;
  }
}
