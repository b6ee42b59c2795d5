import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import { BadRequest, Conflict, HttpError, NotFound } from '../http/errors.ts';
import type { JobObjects } from '../k8s/builders.ts';
import { annotations, labels, randomSuffix } from '../k8s/names.ts';
import { readTar, type NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { Backend, ListOptions, LogOptions, PodFilter } from './types.ts';

/**
 * The embedded backend for machines without a cluster: a Job runs as local processes (the image is
 * not used), its code unpacked into a per-job directory that is the working directory, and its
 * logs go to files. State is plain JSON on disk, so restarts of the server keep the job list.
 */
export class LocalBackend implements Backend {
  readonly kind = 'local' as const;
  private readonly running = new Map<string, ChildProcess>();

  private readonly recovered: Promise<void>;

  constructor(private readonly root: string) {
    this.recovered = this.failInterruptedJobs().catch((error: Error) => console.error('kbatch: local backend recovery failed:', error.message));
  }

  /**
   * Processes die with the server. A job that was running when the last server stopped can never
   * finish, so it is marked failed instead of showing "running" forever.
   */
  private async failInterruptedJobs(): Promise<void> {
    let namespaces: string[] = [];
    try {
      namespaces = await readdir(join(this.root, 'namespaces'));
    } catch {
      return;
    }
    for (const namespace of namespaces) {
      const { items } = await this.listJobs(namespace, {});
      for (const job of items) {
        if (job.status?.conditions?.length) continue;
        const now = new Date();
        for (const pod of await this.listPods(namespace, { jobName: job.metadata!.name! })) {
          if (pod.status?.phase === 'Running' || pod.status?.phase === 'Pending') {
            pod.status = { ...pod.status, phase: 'Failed', reason: 'ServerRestarted', message: 'the kbatch server stopped while this process ran' };
            await this.savePod(namespace, job.metadata!.name!, pod);
          }
        }
        job.status = { ...job.status, active: 0, ready: 0, conditions: [{ type: 'Failed', status: 'True', reason: 'ServerRestarted', message: 'the kbatch server stopped while the job ran', lastTransitionTime: now, lastProbeTime: now }] };
        await this.saveJob(namespace, job);
      }
    }
  }

  private jobDir(namespace: string, name: string): string {
    return join(this.root, 'namespaces', namespace, 'jobs', name);
  }

  // Minimal owner record so the shared namespace rule holds here too; the local backend split replaces it.
  async namespaceOwner(namespace: string): Promise<string | null | undefined> {
    const dir = join(this.root, 'namespaces', namespace);
    if (!existsSync(dir)) return undefined;
    return readFile(join(dir, 'owner'), 'utf8').catch(() => null);
  }

  async ensureNamespace(namespace: V1Namespace): Promise<string | null> {
    const dir = join(this.root, 'namespaces', namespace.metadata!.name!);
    await mkdir(join(dir, 'jobs'), { recursive: true });
    const owner = namespace.metadata?.annotations?.[annotations.username];
    // `wx`: the first owner written stays, like a namespace that already exists.
    if (owner !== undefined) await writeFile(join(dir, 'owner'), owner, { flag: 'wx' }).catch(() => undefined);
    return readFile(join(dir, 'owner'), 'utf8').catch(() => null);
  }

  async storeCode(_owner: unknown, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode> {
    const dir = join(this.root, 'uploads');
    await mkdir(dir, { recursive: true });
    await this.deleteExpiredUploads(dir, expiresAt.getTime() - Date.now());
    const path = join(dir, `${randomSuffix(10)}.tgz`);
    await writeFile(path, upload.archive);
    return { kind: 'local', path };
  }

  /** Jobs unpack their own copy, so an upload file is only needed while its reference is valid. */
  private async deleteExpiredUploads(dir: string, ttlMs: number): Promise<void> {
    const cutoff = Date.now() - ttlMs;
    for (const file of await readdir(dir)) {
      const path = join(dir, file);
      const modified = await stat(path).then((s) => s.mtimeMs, () => Date.now());
      if (modified < cutoff) await rm(path, { force: true });
    }
  }

  async deleteCode(code: StoredCode): Promise<void> {
    if (code.kind === 'local') await rm(code.path, { force: true });
  }

  async createJob(objects: JobObjects, code: StoredCode | undefined): Promise<V1Job> {
    const { namespace, job, secret } = objects;
    const name = job.metadata!.name!;
    const dir = this.jobDir(namespace, name);
    if (code && code.kind !== 'local') throw new BadRequest('upload: this upload was stored by a Kubernetes backend', 'upload');
    if (code && !existsSync(code.path)) throw new BadRequest('upload: the uploaded code no longer exists; upload it again', 'upload');
    if (existsSync(dir)) throw new Conflict(`job ${name} already exists`);
    const container = job.spec!.template.spec!.containers[0]!;
    const argv = [...(container.command ?? []), ...(container.args ?? [])];
    if (!argv.length) throw new BadRequest('command: the local backend runs the command itself and needs one (images are not used)', 'command');
    await mkdir(join(dir, 'code'), { recursive: true });
    if (code) await unpackInto(code.path, join(dir, 'code'));
    const created: V1Job = {
      ...job,
      metadata: { ...job.metadata, uid: randomUUID(), creationTimestamp: new Date(), resourceVersion: '1' },
      status: { active: 0, succeeded: 0, failed: 0, ready: 0, startTime: new Date() },
    };
    await writeFile(join(dir, 'secret.json'), JSON.stringify(secret));
    await this.saveJob(namespace, created);
    void this.run(namespace, created, argv, decodeSecret(secret.data ?? {}));
    return created;
  }

  // Schedules need a controller that outlives requests; the local backend has none.
  async createCronJob(): Promise<V1CronJob> {
    throw new HttpError(501, 'CronJobs need the Kubernetes backend; the local backend runs one-off jobs only');
  }

  async listCronJobs(): Promise<V1CronJob[]> {
    return [];
  }

  async getCronJob(_namespace: string, name: string): Promise<V1CronJob> {
    throw new NotFound(`cronjobs.batch "${name}" not found`);
  }

  async deleteCronJob(_namespace: string, name: string): Promise<V1CronJob> {
    throw new NotFound(`cronjobs.batch "${name}" not found`);
  }

  private async saveJob(namespace: string, job: V1Job): Promise<void> {
    if (!existsSync(this.jobDir(namespace, job.metadata!.name!))) return;
    await writeAtomically(join(this.jobDir(namespace, job.metadata!.name!), 'job.json'), JSON.stringify(job));
  }

  private async savePod(namespace: string, jobName: string, pod: V1Pod): Promise<void> {
    if (!existsSync(this.jobDir(namespace, jobName))) return;
    await mkdir(join(this.jobDir(namespace, jobName), 'pods'), { recursive: true });
    await writeAtomically(join(this.jobDir(namespace, jobName), 'pods', `${pod.metadata!.name}.json`), JSON.stringify(pod));
  }

  private async run(namespace: string, job: V1Job, argv: string[], env: Record<string, string>): Promise<void> {
    const name = job.metadata!.name!;
    const completions = job.spec?.completions ?? 1;
    const parallelism = Math.max(1, job.spec?.parallelism ?? 1);
    const backoffLimit = job.spec?.backoffLimit ?? 0;
    let nextIndex = 0;
    let failures = 0;
    const retryQueue: number[] = [];
    const status = job.status!;
    const runOne = async (index: number): Promise<void> => {
      if (!existsSync(this.jobDir(namespace, name))) return;
      const podName = `${name}-${randomSuffix(5)}`;
      const pod = podFor(job, podName, index, completions > 1);
      await this.savePod(namespace, name, pod);
      status.active = (status.active ?? 0) + 1;
      status.ready = (status.ready ?? 0) + 1;
      await this.saveJob(namespace, job);
      const exitCode = await this.spawnPod(namespace, name, pod, argv, { ...env, ...(completions > 1 ? { JOB_COMPLETION_INDEX: String(index) } : {}) });
      if (!existsSync(this.jobDir(namespace, name))) return;
      status.active = Math.max(0, (status.active ?? 1) - 1);
      status.ready = Math.max(0, (status.ready ?? 1) - 1);
      if (exitCode === 0) status.succeeded = (status.succeeded ?? 0) + 1;
      else {
        status.failed = (status.failed ?? 0) + 1;
        failures++;
        if (failures <= backoffLimit) retryQueue.push(index);
      }
      await this.saveJob(namespace, job);
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
    if (!existsSync(this.jobDir(namespace, name))) return;
    const now = new Date();
    const succeeded = (status.succeeded ?? 0) >= completions;
    status.conditions = [
      succeeded
        ? { type: 'Complete', status: 'True', lastTransitionTime: now, lastProbeTime: now }
        : { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastTransitionTime: now, lastProbeTime: now },
    ];
    if (succeeded) status.completionTime = now;
    await this.saveJob(namespace, job);
  }

  private spawnPod(namespace: string, jobName: string, pod: V1Pod, argv: string[], env: Record<string, string>): Promise<number> {
    const dir = this.jobDir(namespace, jobName);
    const podName = pod.metadata!.name!;
    const log = createWriteStream(join(dir, 'pods', `${podName}.log`));
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), {
        cwd: join(dir, 'code'),
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      this.running.set(podName, child);
      const startedAt = new Date();
      pod.status = { ...pod.status, phase: 'Running', startTime: startedAt, containerStatuses: [{ name: 'job', ready: true, restartCount: 0, image: pod.spec!.containers[0]!.image!, imageID: '', state: { running: { startedAt } } }] };
      void this.savePod(namespace, jobName, pod);
      const pending = { out: '', err: '' };
      const writeLines = (key: 'out' | 'err', chunk: Buffer) => {
        pending[key] += chunk.toString('utf8');
        const lines = pending[key].split('\n');
        pending[key] = lines.pop() ?? '';
        for (const line of lines) writeLogLine(log, line);
      };
      child.stdout!.on('data', (chunk: Buffer) => writeLines('out', chunk));
      child.stderr!.on('data', (chunk: Buffer) => writeLines('err', chunk));
      const finish = (exitCode: number, reason: string, message?: string) => {
        for (const key of ['out', 'err'] as const) if (pending[key]) writeLogLine(log, pending[key]);
        if (message) writeLogLine(log, message);
        log.end(() => {
          const finishedAt = new Date();
          pod.status = {
            ...pod.status,
            phase: exitCode === 0 ? 'Succeeded' : 'Failed',
            containerStatuses: [{ name: 'job', ready: false, restartCount: 0, image: pod.spec!.containers[0]!.image!, imageID: '', state: { terminated: { exitCode, reason, startedAt, finishedAt } } }],
          };
          const done = () => {
            this.running.delete(podName);
            resolve(exitCode);
          };
          void this.savePod(namespace, jobName, pod).then(done, done);
        });
      };
      child.on('error', (error) => finish(127, 'StartError', `[kbatch] could not start ${argv[0]}: ${error.message}`));
      child.on('close', (code, signal) => finish(code ?? 128 + (signal ? 9 : 0), code === 0 ? 'Completed' : 'Error'));
    });
  }

  private async readJob(namespace: string, name: string): Promise<V1Job> {
    try {
      return reviveDates(JSON.parse(await readFile(join(this.jobDir(namespace, name), 'job.json'), 'utf8'))) as V1Job;
    } catch {
      throw new NotFound(`jobs.batch "${name}" not found`);
    }
  }

  async listJobs(namespace: string, options: ListOptions) {
    await this.recovered;
    let names: string[] = [];
    try {
      names = await readdir(join(this.root, 'namespaces', namespace, 'jobs'));
    } catch {
      return { items: [] };
    }
    names.sort();
    const start = options.continueToken ? names.findIndex((n) => n > options.continueToken!) : 0;
    const slice = start < 0 ? [] : names.slice(start, options.limit ? start + options.limit : undefined);
    const items = (await Promise.all(slice.map((n) => this.readJob(namespace, n).catch(() => undefined)))).filter((j): j is V1Job => Boolean(j));
    const more = options.limit !== undefined && start >= 0 && start + options.limit < names.length;
    return { items, continueToken: more ? slice[slice.length - 1] : undefined };
  }

  getJob(namespace: string, name: string): Promise<V1Job> {
    return this.readJob(namespace, name);
  }

  async deleteJob(namespace: string, name: string): Promise<V1Job> {
    const job = await this.readJob(namespace, name);
    for (const pod of await this.listPods(namespace, { jobName: name })) {
      const child = this.running.get(pod.metadata!.name!);
      if (child?.pid) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    // Let the killed processes' final status writes land before removing their directory.
    const pods = new Set((await this.listPods(namespace, { jobName: name })).map((p) => p.metadata!.name!));
    for (let i = 0; i < 50 && [...pods].some((p) => this.running.has(p)); i++) await new Promise((r) => setTimeout(r, 100));
    await rm(this.jobDir(namespace, name), { recursive: true, force: true, maxRetries: 3 });
    return job;
  }

  async listPods(namespace: string, filter: PodFilter = {}): Promise<V1Pod[]> {
    const wanted = filter.jobName;
    let jobs: string[] = [];
    try {
      jobs = wanted ? [wanted] : await readdir(join(this.root, 'namespaces', namespace, 'jobs'));
    } catch {
      return [];
    }
    const pods: V1Pod[] = [];
    for (const job of jobs) {
      let files: string[] = [];
      try {
        files = await readdir(join(this.jobDir(namespace, job), 'pods'));
      } catch {
        continue;
      }
      for (const file of files.filter((f) => f.endsWith('.json'))) {
        try {
          pods.push(reviveDates(JSON.parse(await readFile(join(this.jobDir(namespace, job), 'pods', file), 'utf8'))) as V1Pod);
        } catch {
          /* being written */
        }
      }
    }
    return pods.sort((a, b) => String(a.metadata?.creationTimestamp).localeCompare(String(b.metadata?.creationTimestamp)));
  }

  async getPod(namespace: string, name: string): Promise<V1Pod> {
    const job = name.replace(/-[a-z0-9]{5}$/, '');
    const pod = (await this.listPods(namespace, { jobName: job })).find((p) => p.metadata?.name === name);
    if (!pod) throw new NotFound(`pods "${name}" not found`);
    return pod;
  }

  async podLogs(namespace: string, podName: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
    const pod = await this.getPod(namespace, podName);
    const jobName = pod.metadata!.labels![labels.jobName]!;
    const file = join(this.jobDir(namespace, jobName), 'pods', `${podName}.log`);
    const since = options.sinceTime ? Date.parse(options.sinceTime) : undefined;
    const output = new PassThrough();
    let carry = '';
    const emit = (text: string) => {
      const lines = (carry + text).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) {
        const space = line.indexOf(' ');
        const stamp = line.slice(0, space);
        // Inclusive, as Kubernetes' sinceTime is: a resuming client de-duplicates the boundary line.
        if (since !== undefined && Date.parse(stamp) < since) continue;
        output.write((options.timestamps ? line : line.slice(space + 1)) + '\n');
      }
    };
    const isFinished = async () => {
      try {
        const phase = (await this.getPod(namespace, podName)).status?.phase;
        return phase !== 'Running' && phase !== 'Pending';
      } catch {
        return true;
      }
    };
    void (async () => {
      let offset = 0;
      for (;;) {
        if (signal.aborted) break;
        const finished = await isFinished();
        const size = await stat(file).then((s) => s.size, () => 0);
        if (size > offset) {
          for await (const chunk of createReadStream(file, { start: offset, end: size - 1 })) emit((chunk as Buffer).toString('utf8'));
          offset = size;
        }
        if (!options.follow || finished) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      output.end();
    })().catch((error: Error) => output.destroy(error));
    return output;
  }

  async close(): Promise<void> {
    for (const child of this.running.values()) {
      if (child.pid) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
    }
  }
}

/** Readers poll these files while jobs run; a rename never shows them a half-written one. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const temporary = `${path}.${randomSuffix(6)}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

function writeLogLine(log: WriteStream, line: string): void {
  log.write(`${new Date().toISOString()} ${line}\n`);
}

function decodeSecret(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}


const isoDate = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function reviveDates(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value), (_k, v: unknown) => (typeof v === 'string' && isoDate.test(v) ? new Date(v) : v));
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
      labels: { ...template.metadata?.labels, [labels.jobName]: name, [labels.legacyJobName]: name, ...(indexed ? { [labels.jobCompletionIndex]: String(index) } : {}) },
      annotations: { ...template.metadata?.annotations },
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: job.metadata!.uid!, controller: true }],
    },
    spec: { ...template.spec!, nodeName: 'local' },
    status: { phase: 'Pending' },
  };
}

async function unpackInto(archivePath: string, dir: string): Promise<void> {
  const entries = readTar(gunzipSync(await readFile(archivePath)), { maxBytes: Number.MAX_SAFE_INTEGER, maxFiles: Number.MAX_SAFE_INTEGER });
  for (const entry of entries) {
    const target = join(dir, entry.path);
    if (entry.type === 'directory') await mkdir(target, { recursive: true });
    else {
      await mkdir(dirname(target), { recursive: true });
      if (entry.type === 'symlink') await symlink(entry.linkTarget!, target);
      else {
        await writeFile(target, entry.data);
        await chmod(target, entry.mode);
      }
    }
  }
}
