import type { Readable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { getGlobalDispatcher, type Dispatcher } from 'undici';
import { BadRequest, NotFound, Upstream } from '../http/errors.ts';
import { buildCodeConfigMap, buildUploadsClaim, buildUploadWriterJob, isAbandonedUpload, ownerReferenceTo, type CronJobObjects, type JobObjects, type Owner, type OwnerReference } from '../k8s/builders.ts';
import { makePooledApiClient, PooledKubeAuthentication } from '../k8s/connection.ts';
import { PodLogStream } from '../k8s/log-stream.ts';
import { annotations, labels, podsOfJobSelector, randomSuffix } from '../k8s/names.ts';
import type { NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { Backend, ListOptions, LogOptions, PodFilter } from './types.ts';

export interface KubernetesBackendOptions {
  kubeconfig?: string;
  configMapMaxBytes: number;
  helperImage: string;
  uploadPvcSize: string;
  uploadPvcStorageClass?: string;
  uploadPvcAccessMode: string;
  logPollSeconds: number;
  uploadTtlSeconds: number;
}

function isStatus(error: unknown, code: number): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

const strategicMerge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);

/**
 * A write re-reads a namespace it has not seen for this long: owners never change, but an admin may
 * delete a namespace, and then the next submit must create it again.
 */
const namespaceRecheckMs = 60_000;

/** A followed log that stays quiet has its pod's phase read at most this many poll intervals apart. */
const maxQuietPolls = 8;

/** How long a follow waits for the API server's answer before answering its client (see podLogs). */
const followAnswerWaitMs = 300;

/** A chunk of a large upload; 700 KiB of binary stays under the 1 MiB ConfigMap limit once base64'd. */
const chunkBytes = 700 * 1024;

export class KubernetesBackend implements Backend {
  readonly kind = 'kubernetes' as const;
  private readonly kc: k8s.KubeConfig;
  private readonly core: k8s.CoreV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly auth: PooledKubeAuthentication;
  /** Owner records of namespaces seen by this process, and when each was last read. */
  private readonly owners = new Map<string, { owner: string | null; seen: number }>();
  /** Pod phase reads in flight, shared by the followers of one pod. */
  private readonly phaseReads = new Map<string, Promise<string | undefined>>();

  constructor(private readonly options: KubernetesBackendOptions) {
    this.kc = new k8s.KubeConfig();
    if (options.kubeconfig) this.kc.loadFromFile(options.kubeconfig);
    else this.kc.loadFromDefault();
    this.auth = new PooledKubeAuthentication(this.kc);
    this.core = makePooledApiClient(this.kc, this.auth, k8s.CoreV1Api);
    this.batch = makePooledApiClient(this.kc, this.auth, k8s.BatchV1Api);
  }

  async close(): Promise<void> {
    await this.auth.close();
  }

  /** One read per namespace per process: a recorded owner never changes, so the answer is kept. */
  async namespaceOwner(name: string): Promise<string | null | undefined> {
    const known = this.owners.get(name);
    return known ? known.owner : this.readOwner(name);
  }

  private async readOwner(name: string): Promise<string | null | undefined> {
    try {
      return this.rememberOwner(await this.core.readNamespace({ name }));
    } catch (error) {
      // Not cached: a namespace that does not exist (any more) may be created by another process.
      if (isStatus(error, 404)) {
        this.owners.delete(name);
        return undefined;
      }
      throw error;
    }
  }

  private rememberOwner(namespace: k8s.V1Namespace): string | null {
    const owner = namespace.metadata?.annotations?.[annotations.username] ?? null;
    this.owners.set(namespace.metadata!.name!, { owner, seen: Date.now() });
    return owner;
  }

  async ensureNamespace(namespace: k8s.V1Namespace): Promise<string | null> {
    const name = namespace.metadata!.name!;
    const known = this.owners.get(name);
    if (known && Date.now() - known.seen < namespaceRecheckMs) return known.owner;
    const existing = await this.readOwner(name);
    if (existing !== undefined) return existing;
    try {
      return this.rememberOwner(await this.core.createNamespace({ body: namespace }));
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    // Created by a concurrent request in between: whose it is decides, so read it.
    const owner = await this.readOwner(name);
    if (owner === undefined) throw new Upstream(`namespace ${name} was created and deleted concurrently; try again`, 503);
    return owner;
  }

  async storeCode(owner: Owner, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode> {
    await this.deleteAbandonedUploads(owner.namespace);
    const id = randomSuffix(10);
    const meta = { sha256: upload.sha256, files: upload.files, expiresAt };
    if (upload.archive.length <= this.options.configMapMaxBytes) {
      const body = buildCodeConfigMap(owner, `kbatch-code-${id}`, upload.archive, meta);
      await this.core.createNamespacedConfigMap({ namespace: body.metadata!.namespace!, body });
      return { kind: 'configmap', namespace: body.metadata!.namespace!, name: body.metadata!.name! };
    }
    return this.storeCodeInClaim(owner, id, upload, meta);
  }

  private async storeCodeInClaim(owner: Owner, id: string, upload: NormalizedUpload, meta: { sha256: string; files: number; expiresAt: Date }): Promise<StoredCode> {
    const claim = buildUploadsClaim(owner, { ...this.options });
    const namespace = claim.metadata!.namespace!;
    try {
      await this.core.createNamespacedPersistentVolumeClaim({ namespace, body: claim });
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    const chunkNames: string[] = [];
    try {
      for (let offset = 0, i = 0; offset < upload.archive.length; offset += chunkBytes, i++) {
        const name = `kbatch-code-${id}-${String(i).padStart(4, '0')}`;
        const chunk = buildCodeConfigMap(owner, name, upload.archive.subarray(offset, offset + chunkBytes), meta);
        chunk.binaryData = { part: chunk.binaryData!['code.tgz']! };
        await this.core.createNamespacedConfigMap({ namespace, body: chunk });
        chunkNames.push(name);
      }
      const writer = buildUploadWriterJob(owner, `kbatch-upload-${id}`, chunkNames, id, this.options);
      const created = await this.batch.createNamespacedJob({ namespace, body: writer });
      await Promise.all(chunkNames.map((name) => this.addOwner('configmap', namespace, name, ownerReferenceTo(created))));
    } catch (error) {
      await Promise.allSettled(chunkNames.map((name) => this.core.deleteNamespacedConfigMap({ name, namespace })));
      throw error;
    }
    return { kind: 'pvc', namespace, claim: claim.metadata!.name!, path: id, configMaps: chunkNames };
  }

  /** Stateless garbage collection: each new upload sweeps the user's expired, never-used ones. */
  private async deleteAbandonedUploads(namespace: string): Promise<void> {
    try {
      const { items } = await this.core.listNamespacedConfigMap({ namespace, labelSelector: labels.upload });
      const now = new Date();
      await Promise.allSettled(items.filter((item) => isAbandonedUpload(item, now)).map((item) => this.core.deleteNamespacedConfigMap({ name: item.metadata!.name!, namespace })));
    } catch (error) {
      // Best effort: a first upload has no namespace yet, and a sweep must never fail an upload.
      if (!isStatus(error, 404)) console.error('kbatch: sweeping abandoned uploads failed:', (error as Error).message);
    }
  }

  async deleteCode(code: StoredCode): Promise<void> {
    if (code.kind === 'configmap') {
      await this.core.deleteNamespacedConfigMap({ name: code.name, namespace: code.namespace }).catch((error) => {
        if (!isStatus(error, 404)) throw error;
      });
    }
  }

  private async addOwner(kind: 'configmap' | 'secret', namespace: string, name: string, owner: OwnerReference): Promise<void> {
    // Strategic merge keys ownerReferences by uid, so a shared upload gains one owner per job.
    const body = { metadata: { ownerReferences: [owner] } };
    if (kind === 'configmap') await this.core.patchNamespacedConfigMap({ name, namespace, body }, strategicMerge);
    else await this.core.patchNamespacedSecret({ name, namespace, body }, strategicMerge);
  }

  async createJob(objects: JobObjects, code: StoredCode | undefined): Promise<k8s.V1Job> {
    const { namespace, job } = objects;
    return this.createOwner(objects, code, async () => {
      const created = await this.batch.createNamespacedJob({ namespace, body: job });
      const remove = () => this.batch.deleteNamespacedJob({ name: created.metadata!.name!, namespace, propagationPolicy: 'Background' });
      return { created, reference: ownerReferenceTo(created), remove };
    });
  }

  async createCronJob(objects: CronJobObjects, code: StoredCode | undefined): Promise<k8s.V1CronJob> {
    const { namespace, cronJob } = objects;
    return this.createOwner(objects, code, async () => {
      const created = await this.batch.createNamespacedCronJob({ namespace, body: cronJob });
      const remove = () => this.batch.deleteNamespacedCronJob({ name: created.metadata!.name!, namespace, propagationPolicy: 'Background' });
      return { created, reference: ownerReferenceTo(created, 'CronJob'), remove };
    });
  }

  /**
   * Secret first, then the owner (Job or CronJob), then ownerReferences on the Secret and the code.
   * Any failure undoes what this call made, so a refused submit leaves nothing behind.
   */
  private async createOwner<T>(
    objects: { namespace: string; secret: k8s.V1Secret },
    code: StoredCode | undefined,
    createOwnerObject: () => Promise<{ created: T; reference: OwnerReference; remove: () => Promise<unknown> }>,
  ): Promise<T> {
    const { namespace, secret } = objects;
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      if (code?.kind === 'configmap') {
        try {
          await this.core.readNamespacedConfigMap({ name: code.name, namespace: code.namespace });
        } catch (error) {
          if (isStatus(error, 404)) throw new BadRequest('upload: the uploaded code no longer exists (its jobs were deleted); upload it again', 'upload');
          throw error;
        }
      }
      await this.core.createNamespacedSecret({ namespace, body: secret });
      cleanups.push(() => this.core.deleteNamespacedSecret({ name: secret.metadata!.name!, namespace }));
      const { created, reference, remove } = await createOwnerObject();
      cleanups.push(remove);
      await this.addOwner('secret', namespace, secret.metadata!.name!, reference);
      if (code?.kind === 'configmap') await this.addOwner('configmap', namespace, code.name, reference);
      return created;
    } catch (error) {
      const results = await Promise.allSettled(cleanups.reverse().map((cleanup) => cleanup()));
      for (const result of results) {
        if (result.status === 'rejected' && !isStatus(result.reason, 404)) console.error('kbatch: cleanup after failed submit failed:', (result.reason as Error).message);
      }
      throw error;
    }
  }

  async listCronJobs(namespace: string): Promise<k8s.V1CronJob[]> {
    return (await this.batch.listNamespacedCronJob({ namespace })).items;
  }

  async getCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    return this.batch.readNamespacedCronJob({ name, namespace });
  }

  async deleteCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    const cronJob = await this.batch.readNamespacedCronJob({ name, namespace });
    await this.batch.deleteNamespacedCronJob({ name, namespace, propagationPolicy: 'Foreground' });
    return cronJob;
  }

  async listJobs(namespace: string, options: ListOptions) {
    const list = await this.batch.listNamespacedJob({ namespace, limit: options.limit, _continue: options.continueToken });
    return { items: list.items, continueToken: list.metadata?._continue || undefined };
  }

  async getJob(namespace: string, name: string): Promise<k8s.V1Job> {
    return this.batch.readNamespacedJob({ name, namespace });
  }

  async deleteJob(namespace: string, name: string): Promise<k8s.V1Job> {
    const job = await this.batch.readNamespacedJob({ name, namespace });
    await this.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Foreground' });
    return job;
  }

  async listPods(namespace: string, filter: PodFilter = {}): Promise<k8s.V1Pod[]> {
    const labelSelector = filter.jobName === undefined ? undefined : podsOfJobSelector(filter.jobName);
    return (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
  }

  async getPod(namespace: string, name: string): Promise<k8s.V1Pod> {
    return this.core.readNamespacedPod({ name, namespace });
  }

  async podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
    // Callers that hold the pod already (job logs) name the container, which saves reading it again.
    const container = options.container ?? (await this.getPod(namespace, pod)).spec?.containers[0]?.name ?? 'job';
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Upstream('No Kubernetes cluster configured');
    const url = new URL(`${cluster.server.replace(/\/+$/, '')}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`);
    url.searchParams.set('container', container);
    if (options.follow) url.searchParams.set('follow', 'true');
    if (options.sinceTime) url.searchParams.set('sinceTime', options.sinceTime);
    if (options.tailLines !== undefined) url.searchParams.set('tailLines', String(options.tailLines));
    if (options.timestamps) url.searchParams.set('timestamps', 'true');

    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const output = new PodLogStream(() => {
      controller.abort();
      signal.removeEventListener('abort', onAbort);
    });
    const context = new k8s.RequestContext(url.toString(), k8s.HttpMethod.GET);
    await this.auth.applySecurityAuthentication(context);
    // undici's request() hands back a Node stream: no web-stream conversion (a promise per chunk) in between.
    const dispatcher = (context.getDispatcher() as Dispatcher | undefined) ?? getGlobalDispatcher();
    const answered = dispatcher
      .request({ origin: url.origin, path: url.pathname + url.search, method: 'GET', headers: context.getHeaders(), signal: controller.signal })
      .then(async (response) => {
        if (response.statusCode === 200) return response.body;
        const text = await response.body.text().catch(() => '');
        let message = text;
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? text;
        } catch {
          /* plain text error */
        }
        if (response.statusCode === 404) throw new NotFound(message || `pod ${pod} not found`);
        throw new k8s.ApiException(response.statusCode, message, JSON.stringify({ message }), {});
      });
    if (options.follow) {
      // The API server answers a follow only once the log has bytes: a quiet pod would hold back our
      // answer, and a client's read timeout would fire. Wait briefly for errors (no such pod or
      // container), then answer and attach the log when it comes.
      let timer: NodeJS.Timeout | undefined;
      const early = await Promise.race([answered.then(() => true, () => true), new Promise<boolean>((resolve) => (timer = setTimeout(resolve, followAnswerWaitMs, false)))]);
      clearTimeout(timer);
      if (!early) {
        answered.then((body) => output.attach(body), (error: Error) => output.fail(error));
        this.endWhenFinished(namespace, pod, output);
        return output;
      }
    }
    try {
      output.attach(await answered);
    } catch (error) {
      signal.removeEventListener('abort', onAbort);
      throw error;
    }
    if (options.follow) this.endWhenFinished(namespace, pod, output);
    return output;
  }

  /**
   * A pod's phase ('Gone' once deleted, undefined when it cannot be read now). Followers of one pod
   * that check within a second of each other share one read: a second's staleness only delays the
   * end of a follow that already waits half a second for lines in flight.
   */
  private podPhase(namespace: string, pod: string): Promise<string | undefined> {
    const key = `${namespace}/${pod}`;
    let read = this.phaseReads.get(key);
    if (!read) {
      read = this.getPod(namespace, pod).then(
        (current) => current.status?.phase,
        (error) => (isStatus(error, 404) ? 'Gone' : undefined),
      );
      this.phaseReads.set(key, read);
      void read.finally(() => setTimeout(() => this.phaseReads.delete(key), 1000).unref());
    }
    return read;
  }

  /**
   * The kubelet (and KWOK) keep a follow stream open after some container exits; the API has no
   * "wait for completion" flag, so the stream ends once the pod phase is final. The phase is read
   * only after a quiet spell: while bytes flow the pod is alive and the check costs nothing. A log
   * that stays quiet is checked ever less often (up to `maxQuietPolls` poll intervals apart), so
   * idle followers cost almost nothing either.
   */
  private endWhenFinished(namespace: string, pod: string, stream: PodLogStream): void {
    const pollMs = this.options.logPollSeconds * 1000;
    let interval = pollMs;
    let timer: NodeJS.Timeout | undefined;
    const check = async () => {
      if (stream.destroyed || stream.readableEnded) return;
      if (stream.active) {
        stream.active = false;
        interval = pollMs;
      } else {
        const phase = await this.podPhase(namespace, pod);
        if (phase === 'Succeeded' || phase === 'Failed' || phase === 'Gone') {
          // Give the last lines in flight a moment to arrive before closing.
          timer = setTimeout(() => stream.finish(), 500);
          return;
        }
        interval = Math.min(interval * 2, pollMs * maxQuietPolls);
      }
      if (!stream.destroyed) timer = setTimeout(() => void check(), interval);
    };
    timer = setTimeout(() => void check(), interval);
    stream.once('close', () => clearTimeout(timer));
  }
}
