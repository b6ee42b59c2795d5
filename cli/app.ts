import { dispatch, type CliIo, type Group } from './command.ts';
import { completionCommand, completions } from './commands/completion.ts';
import { configureCommand } from './commands/configure.ts';
import {
  cronJobDeleteCommand,
  cronJobListCommand,
  cronJobResumeCommand,
  cronJobRunCommand,
  cronJobShowCommand,
  cronJobSubmitCommand,
  cronJobSuspendCommand,
} from './commands/cronjobs.ts';
import { deleteCommand, listCommand, logsCommand, showCommand, waitCommand } from './commands/jobs.ts';
import { outputsCommand } from './commands/outputs.ts';
import { podListCommand, podLogsCommand, podShowCommand } from './commands/pods.ts';
import { profilesCommand } from './commands/profiles.ts';
import { submitCommand } from './commands/submit.ts';
import { printVersion, versionCommand } from './commands/version.ts';
import { describeError, UsageError } from './errors.ts';

export const commandTree: Group = {
  kind: 'group',
  name: 'kbatch',
  summary: 'kbatch controls batch jobs',
  description: 'kbatch controls batch jobs: submit them to Kubernetes from JupyterHub, follow them, fetch their logs and outputs.',
  children: [
    configureCommand,
    {
      kind: 'group',
      name: 'job',
      aliases: ['jobs'],
      summary: 'Manage kbatch jobs.',
      children: [submitCommand, listCommand, showCommand, logsCommand, waitCommand, outputsCommand, deleteCommand],
    },
    {
      kind: 'group',
      name: 'cronjob',
      aliases: ['cronjobs'],
      summary: 'Manage jobs that run on a schedule (they run until deleted).',
      children: [
        cronJobSubmitCommand,
        cronJobListCommand,
        cronJobShowCommand,
        cronJobSuspendCommand,
        cronJobResumeCommand,
        cronJobRunCommand,
        cronJobDeleteCommand,
      ],
    },
    {
      kind: 'group',
      name: 'pod',
      aliases: ['pods'],
      summary: 'Look at the pods of your jobs.',
      children: [podListCommand, podShowCommand, podLogsCommand],
    },
    profilesCommand,
    completionCommand,
    versionCommand,
  ],
};

/** Runs one command line; returns the exit code. Errors become `kbatch: message` lines, never stack traces. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  // What the completion scripts call; not a command people type, so not in the help.
  if (argv[0] === '__complete') {
    io.stdout.write(
      completions(commandTree, argv.slice(1))
        .map((c) => `${c}\n`)
        .join(''),
    );
    return 0;
  }
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
