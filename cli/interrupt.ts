/**
 * What Ctrl-C says. A wait or a follow only watches a job that runs on the cluster; stopping it must
 * not read as stopping the job, so each one registers the line that tells where the job stands and
 * how to pick up again. The entry point (cli/main.ts) prints it on SIGINT and exits 130.
 */
let notice: string | undefined;

/** Registers the notice for the duration of a watch; the returned function removes it. */
export function onInterrupt(text: string): () => void {
  const previous = notice;
  notice = text;
  return () => {
    notice = previous;
  };
}

export function interruptNotice(): string | undefined {
  return notice;
}

/** The notice for watching one job: it keeps running, and the command that resumes the watch. */
export function keepsRunning(job: string, resume: string): string {
  return `kbatch: stopped watching; job ${job} keeps running on the cluster\nhint: resume with ${resume}, or stop it with kbatch job delete ${job}\n`;
}
