import { randomUUID } from 'node:crypto';
import { access, constants, mkdir } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { V1CronJob, V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import { BadRequest, HttpError, NotFound } from '../../http/errors.ts';
import type { JobObjects } from '../../k8s/builders.ts';
import type { ArchiveUpload } from '../../uploads/archive.ts';
import type { StreamedUploadOptions } from '../kubernetes/streamed-upload.ts';
import type { StoredCode } from '../../uploads/reference.ts';
import type { OutputFile } from '../../contract.ts';
import { outputsToSweep, SweepSchedule, type ByteRange } from '../../jobs/outputs.ts';
import type { Owner } from '../../k8s/builders.ts';
import type { Backend, ListOptions, LogOptions, OutputRead, PodFilter } from '../types.ts';
import { archiveOutputDir, listOutputFiles, outputDirectories, readOutputFile, removeOutputDir } from './outputs.ts';
import { tailLog } from './log-tailer.ts';
import { decodeSecret, failInterruptedJobs, LocalRunner } from './runner.ts';
import { isObjectName, LocalStore } from './store.ts';

/**
 * The embedded backend for machines without a cluster: a Job runs as local processes (the image is
 * not used), its code unpacked into a per-job directory that is the working directory, and its
 * logs go to files. State is plain JSON on disk (see store.ts), so restarts keep the job list.
 */
export class LocalBackend implements Backend {
  readonly kind = 'local' as const;
  private readonly store: LocalStore;
  private readonly runner: LocalRunner;
  /** Every call waits for the recovery of the previous run, so nobody sees a dead job as running. */
  private readonly recovered: Promise<void>;
  private readonly sweeps = new SweepSchedule();

  constructor(
    private readonly root: string,
    /** Outputs of deleted jobs older than this are swept (on outputs calls, at most hourly); 0 keeps them. */
    private readonly outputsRetentionSeconds = 0,
  ) {
    this.store = new LocalStore(root);
    this.runner = new LocalRunner(this.store);
    this.recovered = failInterruptedJobs(this.store).catch((error: Error) =>
      console.error('kbatch: local backend recovery failed:', error.message),
    );
  }

  async namespaceOwner(namespace: string): Promise<string | null | undefined> {
    return this.store.namespaceOwner(namespace);
  }

  async ensureNamespace(namespace: V1Namespace): Promise<string | null> {
    return this.store.ensureNamespace(namespace);
  }

  async storeCode(_owner: unknown, upload: ArchiveUpload, expiresAt: Date): Promise<StoredCode> {
    return this.store.storeUpload(upload, expiresAt);
  }

  /** Large code: checked and written to the data dir as it streams (LocalStore.storeUploadStream). */
  async storeCodeStream(_owner: unknown, source: Readable, options: StreamedUploadOptions) {
    return this.store.storeUploadStream(source, options);
  }

  async deleteCode(code: StoredCode): Promise<void> {
    await this.store.deleteUpload(code);
  }

  async createJob(objects: JobObjects, code: StoredCode | undefined): Promise<V1Job> {
    await this.recovered;
    const { namespace, job, secret } = objects;
    const name = job.metadata!.name!;
    if (code && code.kind !== 'local') throw new BadRequest('upload: this upload was stored by a Kubernetes backend', 'upload');
    if (code && !(this.store.isUploadPath(code.path) && (await exists(code.path))))
      throw new BadRequest('upload: the uploaded code no longer exists; upload it again', 'upload');
    const container = job.spec!.template.spec!.containers[0]!;
    const argv = [...(container.command ?? []), ...(container.args ?? [])];
    if (!argv.length)
      throw new BadRequest('command: the local backend runs the command itself and needs one (images are not used)', 'command');
    await this.store.createJobDir(namespace, name, code?.path);
    const created: V1Job = {
      ...job,
      metadata: { ...job.metadata, uid: randomUUID(), creationTimestamp: new Date(), resourceVersion: '1' },
      status: { active: 0, succeeded: 0, failed: 0, ready: 0, startTime: new Date() },
    };
    await this.store.writeSecret(namespace, name, secret);
    await this.store.saveJob(namespace, created);
    void this.runner
      .run(namespace, created, argv, decodeSecret(secret.data ?? {}))
      .catch((error: Error) => console.error(`kbatch: local job ${name} failed to run:`, error.message));
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

  /** Pages in name order; the continue token is the last name of the page. */
  async listJobs(namespace: string, options: ListOptions): Promise<{ items: V1Job[]; continueToken?: string }> {
    await this.recovered;
    const names = await this.store.listJobNames(namespace);
    const start = options.continueToken ? names.findIndex((n) => n > options.continueToken!) : 0;
    const slice = start < 0 ? [] : names.slice(start, options.limit ? start + options.limit : undefined);
    const items = (await Promise.all(slice.map((n) => this.store.readJob(namespace, n).catch(() => undefined)))).filter((j): j is V1Job =>
      Boolean(j),
    );
    const more = options.limit !== undefined && start >= 0 && start + options.limit < names.length;
    return { items, continueToken: more ? slice[slice.length - 1] : undefined };
  }

  async listJobsOfAllUsers(): Promise<{ items: V1Job[]; continueToken?: string }> {
    await this.recovered;
    const pages = await Promise.all((await this.store.listNamespaces()).map((namespace) => this.listJobs(namespace, {})));
    return { items: pages.flatMap((page) => page.items) };
  }

  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await access(this.root, constants.W_OK);
  }

  async getJob(namespace: string, name: string): Promise<V1Job> {
    await this.recovered;
    return this.store.readJob(namespace, name);
  }

  /** Foreground, as on Kubernetes: the processes are dead and their status written before the job goes. */
  async deleteJob(namespace: string, name: string): Promise<V1Job> {
    await this.recovered;
    const job = await this.store.readJob(namespace, name);
    const pods = (await this.store.listPods(namespace, name)).map((p) => p.metadata!.name!);
    await this.runner.stop(namespace, pods);
    await this.store.removeJob(namespace, name);
    return job;
  }

  async listPods(namespace: string, filter: PodFilter = {}): Promise<V1Pod[]> {
    await this.recovered;
    const { jobName } = filter;
    // A name that cannot exist matches no pods; it never becomes a path.
    if (jobName !== undefined && !isObjectName(jobName)) return [];
    return this.store.listPods(namespace, jobName);
  }

  async getPod(namespace: string, name: string): Promise<V1Pod> {
    await this.recovered;
    const pod = await this.store.readPod(namespace, name);
    if (pod.metadata?.name !== name) throw new NotFound(`pods "${name}" not found`);
    return pod;
  }

  async podLogs(namespace: string, podName: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
    await this.getPod(namespace, podName);
    const isFinished = async () => {
      // Asking the runner costs nothing; the pod's own file is read only once it is not running here.
      if (this.runner.isRunning(namespace, podName)) return false;
      const phase = await this.store.readPod(namespace, podName).then(
        (pod) => pod.status?.phase,
        () => undefined,
      );
      return phase !== 'Running' && phase !== 'Pending';
    };
    return tailLog(this.store.podFile(namespace, podName, 'log'), options, signal, isFinished);
  }

  async listOutputs(owner: Owner, job: string): Promise<OutputFile[] | undefined> {
    this.sweepOutputsSoon(owner.namespace);
    return listOutputFiles(this.store.outputsDir(owner.namespace, job));
  }

  async readOutput(owner: Owner, job: string, path: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OutputRead> {
    this.sweepOutputsSoon(owner.namespace);
    return readOutputFile(this.store.outputsDir(owner.namespace, job), path, range, signal);
  }

  async archiveOutputs(owner: Owner, job: string, signal: AbortSignal): Promise<Readable> {
    this.sweepOutputsSoon(owner.namespace);
    return archiveOutputDir(this.store.outputsDir(owner.namespace, job), signal);
  }

  async deleteOutputs(owner: Owner, job: string): Promise<number | undefined> {
    return removeOutputDir(this.store.outputsDir(owner.namespace, job));
  }

  /** Off the request's path, at most hourly per namespace: outputs past the retention whose job is gone. */
  private sweepOutputsSoon(namespace: string): void {
    if (this.outputsRetentionSeconds <= 0) return;
    this.sweeps.maybeRun(namespace, async () => {
      await this.recovered;
      const root = this.store.outputsRoot(namespace);
      const [entries, jobs] = await Promise.all([outputDirectories(root), this.store.listJobNames(namespace)]);
      for (const job of outputsToSweep(entries, new Set(jobs), Date.now(), this.outputsRetentionSeconds))
        await removeOutputDir(this.store.outputsDir(namespace, job));
    });
  }

  async close(): Promise<void> {
    this.runner.close();
  }
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
