import { runCli } from './app.ts';
import { interruptNotice } from './interrupt.ts';

// `kbatch job logs x | head` closes the pipe early; that is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

// Ctrl-C during a wait or a follow: say the job goes on and how to resume, then exit as interrupted.
process.on('SIGINT', () => {
  const notice = interruptNotice();
  process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}${notice ?? ''}`);
  process.exit(130);
});

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: { write: (text) => void process.stdout.write(text), isTTY: Boolean(process.stdout.isTTY) },
  stderr: { write: (text) => void process.stderr.write(text), isTTY: Boolean(process.stderr.isTTY) },
  env: process.env,
  stdoutStream: process.stdout,
  stdin: {
    isTTY: Boolean(process.stdin.isTTY),
    async question(prompt) {
      const { createInterface } = await import('node:readline/promises');
      const reader = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return await reader.question(prompt);
      } finally {
        reader.close();
      }
    },
  },
});
