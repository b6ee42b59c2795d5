import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { labels, randomSuffix } from '../../k8s/names.ts';
import type { LocalStore } from './store.ts';

/**
 * Runs a Job's pods as local processes, the way the Job controller would run them as containers:
 * `parallelism` at a time until `completions` succeeded or more than `backoffLimit` failed. Each
 * process's output goes, one timestamped line at a time, to its pod's log file.
 */
export class LocalRunner {
  /** Keyed by `<namespace>/<pod>`; an entry lives until the pod's final status is on disk. */
  private readonly running = new Map<string, ChildProcess>();

  constructor(private readonly store: LocalStore) {}

  /** True while this process runs the pod; false once its final status is saved (or it never ran here). */
  isRunning(namespace: string, podName: string): boolean {
    return this.running.has(`${namespace}/${podName}`);
  }

  async run(namespace: string, job: V1Job, argv: string[], env: Record<string, string>): Promise<void> {
    const name = job.metadata!.name!;
    const completions = job.spec?.completions ?? 1;
    const parallelism = Math.max(1, job.spec?.parallelism ?? 1);
    const backoffLimit = job.spec?.backoffLimit ?? 0;
    let nextIndex = 0;
    let failures = 0;
    const retryQueue: number[] = [];
    const status = job.status!;
    const runOne = async (index: number): Promise<void> => {
      if (!this.store.hasJob(namespace, name)) return;
      const pod = podFor(job, `${name}-${randomSuffix(5)}`, index, completions > 1);
      await this.store.savePod(namespace, pod);
      status.active = (status.active ?? 0) + 1;
      status.ready = (status.ready ?? 0) + 1;
      await this.store.saveJob(namespace, job);
      const exitCode = await this.spawnPod(namespace, pod, argv, {
        ...env,
        ...(completions > 1 ? { JOB_COMPLETION_INDEX: String(index) } : {}),
      });
      if (!this.store.hasJob(namespace, name)) return;
      status.active = Math.max(0, (status.active ?? 1) - 1);
      status.ready = Math.max(0, (status.ready ?? 1) - 1);
      if (exitCode === 0) status.succeeded = (status.succeeded ?? 0) + 1;
      else {
        status.failed = (status.failed ?? 0) + 1;
        failures++;
        if (failures <= backoffLimit) retryQueue.push(index);
      }
      await this.store.saveJob(namespace, job);
    };
    const workers = Array.from({ length: Math.min(parallelism, completions) }, async () => {
      for (;;) {
        const index = retryQueue.shift() ?? (nextIndex < completions ? nextIndex++ : undefined);
        if (index === undefined) return;
        if (failures > backoffLimit) return;
        await runOne(index);
      }
    });
    await Promise.all(workers);
    if (!this.store.hasJob(namespace, name)) return;
    const now = new Date();
    const succeeded = (status.succeeded ?? 0) >= completions;
    status.conditions = [
      succeeded
        ? { type: 'Complete', status: 'True', lastTransitionTime: now, lastProbeTime: now }
        : {
            type: 'Failed',
            status: 'True',
            reason: 'BackoffLimitExceeded',
            message: 'Job has reached the specified backoff limit',
            lastTransitionTime: now,
            lastProbeTime: now,
          },
    ];
    if (succeeded) status.completionTime = now;
    await this.store.saveJob(namespace, job);
  }

  /**
   * Resolves with the exit code once the log is closed and the final pod status is saved, in that
   * order: a follower that sees the final status can read the log to its end and miss nothing.
   */
  private spawnPod(namespace: string, pod: V1Pod, argv: string[], env: Record<string, string>): Promise<number> {
    const podName = pod.metadata!.name!;
    const key = `${namespace}/${podName}`;
    const jobDir = this.store.jobDir(namespace, pod.metadata!.labels![labels.jobName]!);
    const log = createWriteStream(this.store.podFile(namespace, podName, 'log'));
    const image = pod.spec!.containers[0]!.image!;
    // The job's outputs (KBATCH_OUTPUTS_DIR, /outputs on Kubernetes): shared by its indexes, kept after the job.
    const outputs = this.store.outputsDir(namespace, pod.metadata!.labels![labels.jobName]!);
    mkdirSync(outputs, { recursive: true });
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), {
        cwd: join(jobDir, 'code'),
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? '/tmp',
          LANG: 'C.UTF-8',
          KBATCH_OUTPUTS_DIR: outputs,
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group, so deleting the job kills everything the command started.
        detached: true,
      });
      this.running.set(key, child);
      if (child.pid) void recordProcess(this.store.podFile(namespace, podName, 'process'), child.pid);
      const startedAt = new Date();
      pod.status = {
        ...pod.status,
        phase: 'Running',
        startTime: startedAt,
        containerStatuses: [{ name: 'job', ready: true, restartCount: 0, image, imageID: '', state: { running: { startedAt } } }],
      };
      // Chained, so the final status is never overtaken by this earlier write.
      const running = this.store.savePod(namespace, pod).catch(() => undefined);
      const pending = { out: '', err: '' };
      // Decoded per stream, so a character split across two reads stays whole.
      const writeLines = (stream: 'out' | 'err', chunk: string) => {
        pending[stream] += chunk;
        const lines = pending[stream].split('\n');
        pending[stream] = lines.pop() ?? '';
        for (const line of lines) writeLogLine(log, line);
      };
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => writeLines('out', chunk));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => writeLines('err', chunk));
      let finished = false;
      const finish = (exitCode: number, reason: string, message?: string) => {
        if (finished) return;
        finished = true;
        for (const stream of ['out', 'err'] as const) if (pending[stream]) writeLogLine(log, pending[stream]);
        if (message) writeLogLine(log, message);
        log.end(() => {
          const finishedAt = new Date();
          pod.status = {
            ...pod.status,
            phase: exitCode === 0 ? 'Succeeded' : 'Failed',
            containerStatuses: [
              {
                name: 'job',
                ready: false,
                restartCount: 0,
                image,
                imageID: '',
                state: { terminated: { exitCode, reason, startedAt, finishedAt } },
              },
            ],
          };
          const done = () => {
            this.running.delete(key);
            resolve(exitCode);
          };
          void running.then(() => this.store.savePod(namespace, pod)).then(done, done);
        });
      };
      child.on('error', (error) => finish(127, 'StartError', `[kbatch] could not start ${argv[0]}: ${error.message}`));
      child.on('close', (code, signal) => finish(code ?? 128 + (signal ? 9 : 0), code === 0 ? 'Completed' : 'Error'));
    });
  }

  /** Kills the job's processes and waits (up to 5 s) until their final status writes landed. */
  async stop(namespace: string, podNames: string[]): Promise<void> {
    for (const podName of podNames) signalGroup(this.running.get(`${namespace}/${podName}`), 'SIGKILL');
    for (let i = 0; i < 50 && podNames.some((p) => this.isRunning(namespace, p)); i++) await new Promise((r) => setTimeout(r, 100));
  }

  close(): void {
    for (const child of this.running.values()) signalGroup(child, 'SIGTERM');
  }
}

function signalGroup(child: ChildProcess | undefined, signal: NodeJS.Signals): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* already gone */
  }
}

/**
 * Which process runs a pod, told apart from a later process that reuses its pid: the kernel's boot
 * id and the process's start time (Linux /proc). Where /proc is missing nothing is recorded, and a
 * restart only marks the job failed.
 */
interface ProcessRecord {
  pid: number;
  bootId: string;
  startTime: string;
}

async function processIdentity(pid: number): Promise<ProcessRecord | undefined> {
  try {
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); the command name before it may hold spaces and parentheses.
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return startTime ? { pid, bootId, startTime } : undefined;
  } catch {
    return undefined;
  }
}

async function recordProcess(file: string, pid: number): Promise<void> {
  const identity = await processIdentity(pid);
  if (identity) await writeFile(file, JSON.stringify(identity)).catch(() => undefined);
}

/** Kills the process group a dead server left running, if that very process still runs. */
async function killLeftover(file: string): Promise<void> {
  const recorded = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as ProcessRecord,
    () => undefined,
  );
  if (!recorded || !Number.isInteger(recorded.pid) || recorded.pid <= 1) return;
  const current = await processIdentity(recorded.pid);
  if (current?.bootId !== recorded.bootId || current.startTime !== recorded.startTime) return;
  try {
    process.kill(-recorded.pid, 'SIGKILL');
  } catch {
    /* gone meanwhile */
  }
}

/**
 * A job that was running when the last server stopped can never finish: it is marked failed
 * instead of showing "running" forever, and its processes (in their own groups, so a server
 * killed outright leaves them running) are killed. Reads the store directly: the backend's own
 * methods wait for this recovery to finish.
 */
export async function failInterruptedJobs(store: LocalStore): Promise<void> {
  for (const namespace of await store.listNamespaces()) {
    for (const name of await store.listJobNames(namespace)) {
      const job = await store.readJob(namespace, name).catch(() => undefined);
      if (!job || job.status?.conditions?.length) continue;
      const now = new Date();
      for (const pod of await store.listPods(namespace, name)) {
        if (pod.status?.phase !== 'Running' && pod.status?.phase !== 'Pending') continue;
        await killLeftover(store.podFile(namespace, pod.metadata!.name!, 'process'));
        const startedAt = pod.status.startTime;
        pod.status = {
          ...pod.status,
          phase: 'Failed',
          reason: 'ServerRestarted',
          message: 'the kbatch server stopped while this process ran',
          containerStatuses: (pod.status.containerStatuses ?? []).map((s) => ({
            ...s,
            ready: false,
            state: { terminated: { exitCode: 137, reason: 'ServerRestarted', startedAt, finishedAt: now } },
          })),
        };
        await store.savePod(namespace, pod);
      }
      job.status = {
        ...job.status,
        active: 0,
        ready: 0,
        conditions: [
          {
            type: 'Failed',
            status: 'True',
            reason: 'ServerRestarted',
            message: 'the kbatch server stopped while the job ran',
            lastTransitionTime: now,
            lastProbeTime: now,
          },
        ],
      };
      await store.saveJob(namespace, job);
    }
  }
}

function writeLogLine(log: WriteStream, line: string): void {
  log.write(`${new Date().toISOString()} ${line}\n`);
}

export function decodeSecret(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

function podFor(job: V1Job, podName: string, index: number, indexed: boolean): V1Pod {
  const name = job.metadata!.name!;
  const template = job.spec!.template;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName,
      namespace: job.metadata!.namespace,
      uid: randomUUID(),
      creationTimestamp: new Date(),
      labels: {
        ...template.metadata?.labels,
        [labels.jobName]: name,
        [labels.legacyJobName]: name,
        ...(indexed ? { [labels.jobCompletionIndex]: String(index) } : {}),
      },
      annotations: { ...template.metadata?.annotations },
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: job.metadata!.uid!, controller: true }],
    },
    spec: { ...template.spec!, nodeName: 'local' },
    status: { phase: 'Pending' },
  };
}
