import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { V1Job, V1Namespace, V1Pod } from '@kubernetes/client-node';
import { BadRequest, Conflict, NotFound } from '../../http/errors.ts';
import { annotations, randomSuffix } from '../../k8s/names.ts';
import { longText, readOctal, readString, safeRelativePath, type ArchiveUpload, type UploadLimits } from '../../uploads/archive.ts';
import { sanitizedTar, type StreamedTarSummary } from '../../uploads/tar-stream.ts';
import type { StoredCode } from '../../uploads/reference.ts';

/**
 * The local backend's state on disk, and the only place where a name becomes a path:
 *
 *   <root>/namespaces/<namespace>/namespace.json             the V1Namespace, with its owner annotation
 *   <root>/namespaces/<namespace>/jobs/<job>/job.json        the V1Job
 *   <root>/namespaces/<namespace>/jobs/<job>/secret.json     its env Secret
 *   <root>/namespaces/<namespace>/jobs/<job>/code/           the working directory of its processes
 *   <root>/namespaces/<namespace>/jobs/<job>/pods/<pod>.json the V1Pod; <pod>.log its timestamped output;
 *                                                            <pod>.process which process runs it (runner.ts)
 *   <root>/namespaces/<namespace>/outputs/<job>/             what the job wrote ($KBATCH_OUTPUTS_DIR); outlives
 *                                                            the job (outputs.ts), like `outputs/<job>` of the
 *                                                            user volume on Kubernetes
 *   <root>/uploads/<random>.tgz                              uploaded code until its reference expires
 *
 * Names arrive from requests (URL paths, query strings), so each one is checked against the
 * Kubernetes naming rules before it is joined into a path: `..`, `/`, `%2F` (decoded by the
 * router), dots at the edges, upper case, NUL and the like never reach the file system.
 */

/** DNS-1123 label: what Kubernetes accepts for a namespace; also the shape of every kbatch job and pod name. */
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** DNS-1123 subdomain: what Kubernetes accepts for Job and Pod names. No empty part, so never `.` or `..`. */
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isNamespaceName(name: string): boolean {
  return name.length <= 63 && dns1123Label.test(name);
}

export function isObjectName(name: string): boolean {
  return name.length <= 253 && dns1123Subdomain.test(name);
}

/** Pods are named `<job>-<5 random characters>` (as the Job controller does), so the name locates the pod's directory. */
export function jobOfPod(podName: string): string | undefined {
  const job = /^(.+)-[a-z0-9]{5}$/.exec(podName)?.[1];
  return job && isObjectName(job) ? job : undefined;
}

const isoDate = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** client-node's types say Date where JSON has strings; views call date methods on them. */
function reviveDates<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => (typeof v === 'string' && isoDate.test(v) ? new Date(v) : v)) as T;
}

/** Readers poll these files while jobs run; a rename never shows them a half-written one. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const temporary = `${path}.${randomSuffix(6)}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

export class LocalStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private namespacesDir(): string {
    return join(this.root, 'namespaces');
  }

  namespaceDir(namespace: string): string {
    if (!isNamespaceName(namespace)) throw new NotFound(`namespaces "${namespace}" not found`);
    return join(this.namespacesDir(), namespace);
  }

  jobDir(namespace: string, name: string): string {
    if (!isObjectName(name)) throw new NotFound(`jobs.batch "${name}" not found`);
    return join(this.namespaceDir(namespace), 'jobs', name);
  }

  /** Where the job's outputs live: beside its directory, not in it, so they outlive it. */
  outputsDir(namespace: string, job: string): string {
    if (!isObjectName(job)) throw new NotFound(`jobs.batch "${job}" not found`);
    return join(this.outputsRoot(namespace), job);
  }

  outputsRoot(namespace: string): string {
    return join(this.namespaceDir(namespace), 'outputs');
  }

  /** The pod's record (`.json`) or log (`.log`), found from its name alone: no directory listing. */
  podFile(namespace: string, podName: string, kind: 'json' | 'log' | 'process'): string {
    const job = isObjectName(podName) ? jobOfPod(podName) : undefined;
    if (!job) throw new NotFound(`pods "${podName}" not found`);
    return join(this.jobDir(namespace, job), 'pods', `${podName}.${kind}`);
  }

  /** Namespaces as found on disk; anything that is not a valid name (a stray file) is skipped. */
  async listNamespaces(): Promise<string[]> {
    const names = await readdir(this.namespacesDir()).catch(() => [] as string[]);
    return names.filter(isNamespaceName);
  }

  /**
   * The owner recorded on a namespace: `undefined` when it does not exist (or cannot, by its name),
   * `null` when it exists without a record.
   */
  async namespaceOwner(name: string): Promise<string | null | undefined> {
    if (!isNamespaceName(name)) return undefined;
    const recorded = await this.readNamespace(name);
    if (recorded) return recorded.metadata?.annotations?.[annotations.username] ?? null;
    if (!existsSync(this.namespaceDir(name))) return undefined;
    return this.recordLegacyOwner(name);
  }

  /**
   * Creates the namespace with its owner record unless it exists, and answers the owner recorded
   * now, for the caller to check (lib/api/namespace.ts). The directory is made complete under a
   * temporary name and renamed into place, so a namespace never exists without its record and of
   * two first requests racing for one namespace exactly one becomes its owner.
   */
  async ensureNamespace(namespace: V1Namespace): Promise<string | null> {
    const name = namespace.metadata?.name ?? '';
    if (!isNamespaceName(name)) throw new BadRequest(`namespace: "${name}" is not a valid namespace name`);
    const existing = await this.namespaceOwner(name);
    if (existing !== undefined) return existing;
    // A leading dot is no valid namespace name, so listings never take this for one.
    const temporary = join(this.namespacesDir(), `.${name}.${randomSuffix(8)}.tmp`);
    await mkdir(join(temporary, 'jobs'), { recursive: true });
    const created: V1Namespace = { ...namespace, metadata: { ...namespace.metadata, uid: randomUUID(), creationTimestamp: new Date() } };
    await writeFile(join(temporary, 'namespace.json'), JSON.stringify(created));
    try {
      await rename(temporary, this.namespaceDir(name));
    } catch (error) {
      await rm(temporary, { recursive: true, force: true });
      if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    }
    return (await this.namespaceOwner(name)) ?? null;
  }

  async readNamespace(name: string): Promise<V1Namespace | undefined> {
    try {
      return reviveDates<V1Namespace>(await readFile(join(this.namespaceDir(name), 'namespace.json'), 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /**
   * Namespaces written before owners were recorded: their jobs name the user who made them, and
   * that is recorded now. One without jobs has nothing to protect and stays without a record.
   */
  private async recordLegacyOwner(namespace: string): Promise<string | null> {
    for (const name of await this.listJobNames(namespace)) {
      const owner = (await this.readJob(namespace, name).catch(() => undefined))?.metadata?.annotations?.[annotations.username];
      if (owner === undefined) continue;
      const record: V1Namespace = {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: namespace, annotations: { [annotations.username]: owner }, uid: randomUUID(), creationTimestamp: new Date() },
      };
      await writeFile(join(this.namespaceDir(namespace), 'namespace.json'), JSON.stringify(record), { flag: 'wx' }).catch(() => undefined);
      return (await this.readNamespace(namespace))?.metadata?.annotations?.[annotations.username] ?? null;
    }
    return null;
  }

  uploadsDir(): string {
    return join(this.root, 'uploads');
  }

  async storeUpload(upload: ArchiveUpload, expiresAt: Date): Promise<StoredCode> {
    const path = await this.newUploadPath(expiresAt.getTime() - Date.now());
    await writeFile(path, upload.archive);
    return { kind: 'local', path };
  }

  /**
   * A tar (or tar.gz) checked as it streams (TarSanitizer) and written gzip'd to the uploads
   * directory under a temporary name, renamed into place only when complete: memory is a zlib
   * window or two, whatever the size. A refused upload leaves no file.
   */
  async storeUploadStream(
    source: Readable,
    options: { gzip: boolean; limits: UploadLimits; uploadTtlSeconds: number },
  ): Promise<{ code: StoredCode; summary: StreamedTarSummary }> {
    const path = await this.newUploadPath(options.uploadTtlSeconds * 1000);
    const partial = `${path}.partial`;
    const { tar, refusal } = sanitizedTar(source, options);
    try {
      await pipeline(tar, createGzip(), createWriteStream(partial, { flags: 'wx', mode: 0o600 }));
      await rename(partial, path);
    } catch (error) {
      await rm(partial, { force: true });
      throw refusal() ?? error;
    }
    return { code: { kind: 'local', path }, summary: tar.summary() };
  }

  private async newUploadPath(ttlMs: number): Promise<string> {
    const dir = this.uploadsDir();
    await mkdir(dir, { recursive: true });
    await this.deleteExpiredUploads(ttlMs);
    return join(dir, `${randomSuffix(10)}.tgz`);
  }

  /** Jobs unpack their own copy, so an upload file is only needed while its reference is valid. */
  private async deleteExpiredUploads(ttlMs: number): Promise<void> {
    const cutoff = Date.now() - ttlMs;
    for (const file of await readdir(this.uploadsDir())) {
      const path = join(this.uploadsDir(), file);
      const modified = await stat(path).then(
        (s) => s.mtimeMs,
        () => Date.now(),
      );
      if (modified < cutoff) await rm(path, { force: true });
    }
  }

  /** References are signed, but a path outside the uploads directory is never read or deleted all the same. */
  isUploadPath(path: string): boolean {
    return resolve(path).startsWith(this.uploadsDir() + sep);
  }

  async deleteUpload(code: StoredCode): Promise<void> {
    if (code.kind === 'local' && this.isUploadPath(code.path)) await rm(code.path, { force: true });
  }

  /** The job's directory with its code unpacked; Conflict when the name is taken. */
  async createJobDir(namespace: string, name: string, codePath: string | undefined): Promise<string> {
    if (!isObjectName(name)) throw new BadRequest(`name: "${name}" is not a valid job name`, 'name');
    const dir = this.jobDir(namespace, name);
    await mkdir(dirname(dir), { recursive: true });
    // Not recursive: of two creates of one name, exactly one makes the directory.
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'EEXIST' ? new Conflict(`job ${name} already exists`) : error;
    });
    await mkdir(join(dir, 'code'));
    if (codePath) await unpackInto(codePath, join(dir, 'code'));
    return dir;
  }

  hasJob(namespace: string, name: string): boolean {
    return existsSync(this.jobDir(namespace, name));
  }

  async writeSecret(namespace: string, name: string, secret: unknown): Promise<void> {
    await writeFile(join(this.jobDir(namespace, name), 'secret.json'), JSON.stringify(secret));
  }

  /** A no-op once the job was deleted: a process that ends after its job is gone must not recreate it. */
  async saveJob(namespace: string, job: V1Job): Promise<void> {
    const dir = this.jobDir(namespace, job.metadata!.name!);
    if (!existsSync(dir)) return;
    await writeAtomically(join(dir, 'job.json'), JSON.stringify(job));
  }

  async readJob(namespace: string, name: string): Promise<V1Job> {
    try {
      return reviveDates<V1Job>(await readFile(join(this.jobDir(namespace, name), 'job.json'), 'utf8'));
    } catch {
      throw new NotFound(`jobs.batch "${name}" not found`);
    }
  }

  async listJobNames(namespace: string): Promise<string[]> {
    const names = await readdir(join(this.namespaceDir(namespace), 'jobs')).catch(() => [] as string[]);
    return names.filter(isObjectName).sort();
  }

  async removeJob(namespace: string, name: string): Promise<void> {
    await rm(this.jobDir(namespace, name), { recursive: true, force: true, maxRetries: 3 });
  }

  async savePod(namespace: string, pod: V1Pod): Promise<void> {
    const file = this.podFile(namespace, pod.metadata!.name!, 'json');
    if (!existsSync(dirname(dirname(file)))) return;
    await mkdir(dirname(file), { recursive: true });
    await writeAtomically(file, JSON.stringify(pod));
  }

  async readPod(namespace: string, name: string): Promise<V1Pod> {
    try {
      return reviveDates<V1Pod>(await readFile(this.podFile(namespace, name, 'json'), 'utf8'));
    } catch {
      throw new NotFound(`pods "${name}" not found`);
    }
  }

  /** Pods of one job, or of the whole namespace; oldest first. */
  async listPods(namespace: string, jobName?: string): Promise<V1Pod[]> {
    const jobs = jobName === undefined ? await this.listJobNames(namespace) : [jobName];
    const pods: V1Pod[] = [];
    for (const job of jobs) {
      const dir = join(this.jobDir(namespace, job), 'pods');
      const files = await readdir(dir).catch(() => [] as string[]);
      for (const file of files.filter((f) => f.endsWith('.json'))) {
        try {
          pods.push(reviveDates<V1Pod>(await readFile(join(dir, file), 'utf8')));
        } catch {
          /* removed with its job meanwhile */
        }
      }
    }
    const created = (pod: V1Pod) => new Date(pod.metadata?.creationTimestamp ?? 0).getTime();
    return pods.sort((a, b) => created(a) - created(b));
  }
}

/**
 * Unpacks a stored upload as it streams: memory is one chunk, whatever the upload's size. The
 * archive was written by kbatch itself (normalizeUpload or TarSanitizer, both checked on the way
 * in): ustar headers, GNU long names and link targets, files, directories and symlinks. Paths are
 * checked again all the same, so nothing lands outside the job's directory.
 */
async function unpackInto(archivePath: string, dir: string): Promise<void> {
  const gunzip = createGunzip();
  const reading = pipeline(createReadStream(archivePath), gunzip);
  reading.catch(() => undefined); // the iteration below sees the same error
  const chunks = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let rest: Buffer = Buffer.alloc(0);
  const fill = async (bytes: number) => {
    while (rest.length < bytes) {
      const next = await chunks.next();
      if (next.done) throw new Error(`the stored upload ${archivePath} is truncated`);
      rest = rest.length ? Buffer.concat([rest, next.value]) : next.value;
    }
  };
  const exact = async (bytes: number) => {
    await fill(bytes);
    const out = rest.subarray(0, bytes);
    rest = rest.subarray(bytes);
    return out;
  };
  async function* pass(bytes: number): AsyncGenerator<Buffer> {
    while (bytes > 0) {
      if (!rest.length) await fill(1);
      const piece = rest.subarray(0, Math.min(bytes, rest.length));
      rest = rest.subarray(piece.length);
      bytes -= piece.length;
      yield piece;
    }
  }
  const skip = async (bytes: number) => {
    for await (const _ of pass(bytes));
  };
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const header = await exact(512);
    if (header.every((byte) => byte === 0)) break;
    const typeflag = String.fromCharCode(header[156]!);
    const size = readOctal(header, 124, 12, 'size');
    const padding = (512 - (size % 512)) % 512;
    if (typeflag === 'L' || typeflag === 'K') {
      const text = longText(await exact(size));
      if (typeflag === 'L') longName = text;
      else longLink = text;
      await skip(padding);
      continue;
    }
    const path = safeRelativePath(longName ?? readString(header, 0, 100));
    const linkTarget = longLink ?? readString(header, 157, 100);
    longName = longLink = undefined;
    const target = join(dir, path);
    const mode = readOctal(header, 100, 8, 'mode');
    if (typeflag === '5') await mkdir(target, { recursive: true });
    else if (typeflag === '2') {
      await mkdir(dirname(target), { recursive: true });
      await symlink(linkTarget, target);
    } else if (typeflag === '0') {
      await mkdir(dirname(target), { recursive: true });
      const file = await open(target, 'wx');
      try {
        for await (const piece of pass(size)) await file.write(piece);
      } finally {
        await file.close();
      }
      await chmod(target, mode);
      await skip(padding);
      continue;
    }
    await skip(size + padding);
  }
  gunzip.destroy();
}
