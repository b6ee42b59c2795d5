import type { Readable } from 'node:stream';
import type { OutputFile } from '../../contract.ts';
import { outputsDirOf, outputsToSweep, resolveRange, SweepSchedule, type ByteRange } from '../../jobs/outputs.ts';
import type { Owner } from '../../k8s/builders.ts';
import type { OutputRead } from '../types.ts';
import { listDirectories, listFiles, readFile, removeDirectory, removeSubdirectories, statFile, tarDirectory } from './volume-files.ts';
import type { VolumeHelper } from './volume.ts';

/**
 * Job outputs on the Kubernetes backend: every job mounts the user's `kbatch-uploads` claim at
 * /outputs with `subPathExpr: outputs/$(KBATCH_JOB_NAME)` (lib/k8s/builders.ts), so what it writes
 * lands in `outputs/<job>/` of the volume and outlives the Job; it is read back through the user's
 * volume helper (volume.ts, volume-files.ts), in the caller's own namespace only.
 */
export class KubernetesOutputs {
  private readonly sweeps = new SweepSchedule();

  constructor(
    private readonly helper: VolumeHelper,
    /** The names of the namespace's Jobs (one metadata-only list), for the retention sweep. */
    private readonly jobNames: (namespace: string) => Promise<Set<string>>,
    /** 0: outputs are kept until deleted. */
    private readonly retentionSeconds: number,
  ) {}

  async list(owner: Owner, job: string): Promise<OutputFile[] | undefined> {
    this.sweepSoon(owner);
    const files = await listFiles(this.helper, owner, outputsDirOf(job));
    return files?.map((file) => ({ path: file.name, size: file.size, modified: new Date(file.mtime * 1000).toISOString() }));
  }

  /** Two execs: the size first (for the range and Content-Length), then the bytes. */
  async read(owner: Owner, job: string, path: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OutputRead> {
    this.sweepSoon(owner);
    const dir = outputsDirOf(job);
    const { size } = await statFile(this.helper, owner, dir, path);
    const resolved = range ? resolveRange(range, size) : undefined;
    const stream = await readFile(
      this.helper,
      owner,
      dir,
      path,
      resolved ? { start: resolved.start, length: resolved.end - resolved.start + 1 } : { length: size },
      signal,
    );
    return { size, ...(resolved ? { range: resolved } : {}), stream };
  }

  async archive(owner: Owner, job: string, signal: AbortSignal): Promise<Readable> {
    this.sweepSoon(owner);
    return tarDirectory(this.helper, owner, outputsDirOf(job), signal);
  }

  async remove(owner: Owner, job: string): Promise<number | undefined> {
    return removeDirectory(this.helper, owner, outputsDirOf(job));
  }

  /** Off the request's path, at most hourly per namespace: outputs past the retention whose Job is gone. */
  private sweepSoon(owner: Owner): void {
    if (this.retentionSeconds <= 0) return;
    this.sweeps.maybeRun(owner.namespace, async () => {
      const [entries, jobs] = await Promise.all([listDirectories(this.helper, owner, 'outputs'), this.jobNames(owner.namespace)]);
      const old = outputsToSweep(
        entries.map((entry) => ({ job: entry.name, modifiedMs: entry.mtime * 1000 })),
        jobs,
        Date.now(),
        this.retentionSeconds,
      );
      await removeSubdirectories(this.helper, owner, 'outputs', old);
    });
  }
}
