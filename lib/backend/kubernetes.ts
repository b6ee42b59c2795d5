import { Readable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { getGlobalDispatcher, type Dispatcher } from 'undici';
import { BadGateway, BadRequest, Conflict, NotFound, Unavailable } from '../http/errors.ts';
import {
  buildCodeConfigMap,
  buildUploadsClaim,
  buildNamespacePolicy,
  isAbandonedUpload,
  ownedBy,
  ownerReferenceTo,
  type CronJobObjects,
  type JobObjects,
  type NamespacePolicySettings,
  type Owner,
  type OwnerReference,
} from '../k8s/builders.ts';
import { getJson, makePooledApiClient, PooledKubeAuthentication, type RawList } from '../k8s/connection.ts';
import { buildManualJob } from '../k8s/cronjob-run.ts';
import { PodLogStream } from '../k8s/log-stream.ts';
import { annotations, labels, podsOfJobSelector, randomSuffix } from '../k8s/names.ts';
import type { ArchiveUpload, NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { OutputFile } from '../contract.ts';
import type { ByteRange } from '../jobs/outputs.ts';
import type { Backend, CreateOptions, ListOptions, LogOptions, OutputRead, PodFilter } from './types.ts';
import { KubernetesOutputs } from './kubernetes/outputs.ts';
import { deleteStreamedCode, storeStreamedCode, type StreamedUploadOptions } from './kubernetes/streamed-upload.ts';
import { VolumeHelper } from './kubernetes/volume.ts';

export interface KubernetesBackendOptions extends NamespacePolicySettings {
  kubeconfig?: string;
  configMapMaxBytes: number;
  helperImage: string;
  uploadPvcSize: string;
  uploadPvcStorageClass?: string;
  uploadPvcAccessMode: string;
  logPollSeconds: number;
  uploadTtlSeconds: number;
  volumeHelperIdleSeconds: number;
  /** Outputs of deleted Jobs older than this are swept; 0 (the default here) keeps them. */
  outputsRetentionSeconds?: number;
}

function isStatus(error: unknown, code: number): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

const strategicMerge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);
/** Lists answered as PartialObjectMetadataList: names, labels and annotations without the (code) data. */
const metadataOnly = k8s.setHeaderOptions('Accept', 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1');

const uploadsClaimName = 'kbatch-uploads';

function isOwnedBy(object: { metadata?: { ownerReferences?: { uid: string }[] } }, owner: OwnerReference): boolean {
  return Boolean(object.metadata?.ownerReferences?.some((reference) => reference.uid === owner.uid));
}

/**
 * Creates an object owned by `owner`. If it exists already: owned by `owner`, it was made by an
 * earlier attempt of this request and is kept; owned only by an earlier owner of the same name
 * (deleted, its dependents not yet collected) it is stale and replaced; anything else is a Conflict.
 */
async function createOwned(
  body: { metadata?: k8s.V1ObjectMeta },
  owner: OwnerReference | undefined,
  undo: Undo,
  ops: { create: () => Promise<unknown>; ownership: (owner: OwnerReference) => Promise<Ownership>; remove: () => Promise<unknown> },
): Promise<void> {
  const create = async () => {
    await ops.create();
    undo.push(ops.remove);
  };
  try {
    return await create();
  } catch (error) {
    if (!owner || !isStatus(error, 409)) throw error;
  }
  const ownership = await ops.ownership(owner);
  if (ownership === 'ours') return;
  if (ownership === 'foreign')
    throw new Conflict(`${body.metadata?.name} exists and belongs to something else; submit again with another name`);
  await ops.remove().catch((error) => {
    if (!isStatus(error, 404)) throw error;
  });
  return create();
}

type Ownership = 'ours' | 'stale' | 'foreign';

/** Ours, or only an earlier owner's of the same kind and name (deleted, not yet collected), or foreign. */
function ownershipOf(object: { metadata?: k8s.V1ObjectMeta }, owner: OwnerReference): Ownership {
  if (isOwnedBy(object, owner)) return 'ours';
  const owners = object.metadata?.ownerReferences ?? [];
  const stale =
    owners.length > 0 &&
    owners.every((reference) => reference.kind === owner.kind && reference.name === owner.name && reference.uid !== owner.uid);
  return stale ? 'stale' : 'foreign';
}

/** Waits for every step (so the undo list is complete) and rethrows the first failure. */
async function settleAll(steps: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
}

/** What one request created, removed newest first if the request fails. */
class Undo {
  private readonly steps: (() => Promise<unknown>)[] = [];
  push(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    const results = await Promise.allSettled(this.steps.reverse().map((step) => step()));
    for (const result of results) {
      if (result.status === 'rejected' && !isStatus(result.reason, 404))
        console.error('kbatch: cleanup after failed submit failed:', (result.reason as Error).message);
    }
  }
}

/**
 * A write re-reads a namespace it has not seen for this long: owners never change, but an admin may
 * delete a namespace, and then the next submit must create it again.
 */
const namespaceRecheckMs = 60_000;

/** A followed log that stays quiet has its pod's phase read at most this many poll intervals apart. */
const maxQuietPolls = 8;

/** How long a follow waits for the API server's answer before answering its client (see podLogs). */
const followAnswerWaitMs = 300;

export class KubernetesBackend implements Backend {
  readonly kind = 'kubernetes' as const;
  private readonly kc: k8s.KubeConfig;
  private readonly core: k8s.CoreV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly version: k8s.VersionApi;
  private readonly auth: PooledKubeAuthentication;
  private readonly volumes: VolumeHelper;
  /** Owner records of namespaces seen by this process, and when each was last read. */
  private readonly owners = new Map<string, { owner: string | null; seen: number }>();
  /** Pod phase reads in flight, shared by the followers of one pod. */
  private readonly phaseReads = new Map<string, Promise<string | undefined>>();
  /**
   * Namespaces whose `kbatch-uploads` claim this process made sure of: every job mounts it (its
   * /outputs), so it must exist before the first job; after that a submit costs no extra call.
   */
  private readonly claims = new Map<string, Promise<void>>();
  private readonly outputs: KubernetesOutputs;

  constructor(private readonly options: KubernetesBackendOptions) {
    this.kc = new k8s.KubeConfig();
    if (options.kubeconfig) this.kc.loadFromFile(options.kubeconfig);
    else this.kc.loadFromDefault();
    this.auth = new PooledKubeAuthentication(this.kc);
    this.core = makePooledApiClient(this.kc, this.auth, k8s.CoreV1Api);
    this.batch = makePooledApiClient(this.kc, this.auth, k8s.BatchV1Api);
    this.version = makePooledApiClient(this.kc, this.auth, k8s.VersionApi);
    this.volumes = new VolumeHelper(this.kc, this.core, options);
    this.outputs = new KubernetesOutputs(this.volumes, (namespace) => this.jobNames(namespace), options.outputsRetentionSeconds ?? 0);
  }

  async close(): Promise<void> {
    this.volumes.close();
    await this.auth.close();
  }

  /** Large uploads: streamed through the user's volume helper (lib/backend/kubernetes/streamed-upload.ts). */
  async storeCodeStream(owner: Owner, source: Readable, options: StreamedUploadOptions) {
    return storeStreamedCode(this.volumes, owner, source, options);
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
      const created = await this.core.createNamespace({ body: namespace });
      // The admin's quota and default limits come with the namespace (builders.buildNamespacePolicy).
      const { quota, limitRange } = buildNamespacePolicy(name, this.options);
      if (quota) await this.core.createNamespacedResourceQuota({ namespace: name, body: quota });
      if (limitRange) await this.core.createNamespacedLimitRange({ namespace: name, body: limitRange });
      const owner = this.rememberOwner(created);
      await this.ensureClaim({ name: owner ?? '', namespace: name });
      return owner;
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    // Created by a concurrent request in between: whose it is decides, so read it.
    const owner = await this.readOwner(name);
    if (owner === undefined) throw new Unavailable(`namespace ${name} was created and deleted concurrently; try again`);
    return owner;
  }

  /**
   * Where code sent with a submit will be stored, named after the Job that owns it: a retried submit
   * (same Idempotency-Key, hence same Job name) finds or completes the same objects. No I/O. Code too
   * large for a ConfigMap is not placed: it is streamed into the volume before the Job is created.
   */
  placeCode(owner: Owner, upload: NormalizedUpload, ownerName: string): StoredCode | undefined {
    if (upload.kind !== 'archive' || upload.archive.length > this.options.configMapMaxBytes) return undefined;
    return { kind: 'configmap', namespace: owner.namespace, name: `kbatch-code-${ownerName}` };
  }

  /**
   * Code held in memory (POST /uploads, or a submit's code too large to place): a ConfigMap when it
   * fits, nothing owning it until a submit claims it; else streamed into the user's volume.
   */
  async storeCode(owner: Owner, upload: ArchiveUpload, expiresAt: Date, id?: string): Promise<StoredCode> {
    if (upload.archive.length > this.options.configMapMaxBytes) {
      // Already checked and normalised: the stream's own checks pass it unchanged.
      const { code } = await this.storeCodeStream(owner, Readable.from([upload.archive]), {
        gzip: true,
        limits: { maxBytes: Number.MAX_SAFE_INTEGER, maxFiles: Number.MAX_SAFE_INTEGER },
        uploadTtlSeconds: this.options.uploadTtlSeconds,
        id,
      });
      return code;
    }
    const code: StoredCode = { kind: 'configmap', namespace: owner.namespace, name: `kbatch-code-${randomSuffix(10)}` };
    this.sweepAbandonedUploadsSoon(owner.namespace);
    const undo = new Undo();
    try {
      await this.writeCode(owner, code, upload, { expiresAt }, undo);
    } catch (error) {
      await undo.run();
      throw error;
    }
    return code;
  }

  /** Creates the code ConfigMap; with an owner, owned from its create on (one left by an interrupted attempt for that owner is kept). */
  private async writeCode(
    owner: Owner,
    code: Extract<StoredCode, { kind: 'configmap' }>,
    upload: ArchiveUpload,
    meta: { expiresAt?: Date; ownerRef?: OwnerReference },
    undo: Undo,
  ): Promise<void> {
    const base = { sha256: upload.sha256, files: upload.files, ...meta };
    await this.createConfigMap(buildCodeConfigMap(owner, code.name, upload.archive, base), undo, meta.ownerRef);
  }

  private async createConfigMap(body: k8s.V1ConfigMap, undo: Undo, owner: OwnerReference | undefined): Promise<void> {
    const { name, namespace } = body.metadata as { name: string; namespace: string };
    await createOwned(body, owner, undo, {
      create: () => this.core.createNamespacedConfigMap({ namespace, body }),
      ownership: async (owner) => ownershipOf(await this.core.readNamespacedConfigMap({ name, namespace }), owner),
      remove: () => this.core.deleteNamespacedConfigMap({ name, namespace }),
    });
  }

  private async createSecret(body: k8s.V1Secret, undo: Undo, owner: OwnerReference): Promise<void> {
    const { name, namespace } = body.metadata as { name: string; namespace: string };
    // The service may not read Secrets (knative/rbac.yaml): a JSON patch made only of `test`
    // operations asks who owns the existing one without reading it (a failed test is a 422).
    const holds = (tests: { path: string; value: string }[]) =>
      this.core.patchNamespacedSecret({ name, namespace, body: tests.map((test) => ({ op: 'test', ...test })) }, jsonPatch).then(
        () => true,
        (error) => {
          if (isStatus(error, 422)) return false;
          throw error;
        },
      );
    await createOwned(body, owner, undo, {
      create: () => this.core.createNamespacedSecret({ namespace, body }),
      async ownership(owner) {
        if (await holds([{ path: '/metadata/ownerReferences/0/uid', value: owner.uid }])) return 'ours';
        // Secrets of kbatch have exactly one owner, the Job (or CronJob) they are named after.
        const earlier = await holds([
          { path: '/metadata/ownerReferences/0/kind', value: owner.kind },
          { path: '/metadata/ownerReferences/0/name', value: owner.name },
        ]);
        return earlier ? 'stale' : 'foreign';
      },
      remove: () => this.core.deleteNamespacedSecret({ name, namespace }),
    });
  }

  /**
   * Off the hot path: a standalone upload starts a sweep of the namespace's expired, never-claimed
   * uploads and does not wait for it. Only unclaimed uploads carry the label it selects on, and it
   * reads metadata only, so its cost does not grow with the user's jobs or their code.
   */
  private readonly sweeps = new Map<string, Promise<void>>();
  private sweepAbandonedUploadsSoon(namespace: string): void {
    if (!namespace || this.sweeps.has(namespace)) return;
    const sweep = this.deleteAbandonedUploads(namespace).finally(() => this.sweeps.delete(namespace));
    this.sweeps.set(namespace, sweep);
  }

  private async deleteAbandonedUploads(namespace: string): Promise<void> {
    try {
      const { items } = await this.core.listNamespacedConfigMap({ namespace, labelSelector: labels.unclaimedUpload }, metadataOnly);
      const now = new Date();
      await Promise.allSettled(
        items
          .filter((item) => isAbandonedUpload(item, now))
          .map((item) => this.core.deleteNamespacedConfigMap({ name: item.metadata!.name!, namespace })),
      );
    } catch (error) {
      // Best effort: a first upload has no namespace yet, and a sweep must never fail an upload.
      if (!isStatus(error, 404)) console.error('kbatch: sweeping abandoned uploads failed:', (error as Error).message);
    }
  }

  async deleteCode(code: StoredCode, owner?: Owner): Promise<void> {
    if (code.kind === 'configmap') {
      await this.core.deleteNamespacedConfigMap({ name: code.name, namespace: code.namespace }).catch((error) => {
        if (!isStatus(error, 404)) throw error;
      });
    } else if (code.kind === 'pvc') {
      await deleteStreamedCode(this.volumes, { name: owner?.name ?? '', namespace: code.namespace }, code.path);
    }
  }

  /**
   * A submit that references an earlier upload claims it: the Job becomes an owner (strategic merge
   * keys ownerReferences by uid, so a shared upload gains one owner per job) and the unclaimed
   * label goes, so the sweep never lists it again. The only owner patch left: the object predates the Job.
   */
  private async claimUpload(code: Extract<StoredCode, { kind: 'configmap' }>, owner: OwnerReference): Promise<void> {
    const body = { metadata: { ownerReferences: [owner], labels: { [labels.unclaimedUpload]: null } } };
    try {
      await this.core.patchNamespacedConfigMap({ name: code.name, namespace: code.namespace, body }, strategicMerge);
    } catch (error) {
      if (isStatus(error, 404))
        throw new BadRequest('upload: the uploaded code no longer exists (its jobs were deleted); upload it again', 'upload');
      throw error;
    }
  }

  /**
   * The Job is created first and suspended: no pod exists (none holds a node or waits on a missing
   * Secret, whose absence the kubelet only retries every ~10 s) until the Secret and code, each
   * owned by the Job from its create on, are in place; then it is released. An interruption at any
   * step leaves the user's own suspended Job (visible in `job list`, completed by a retry with the
   * same Idempotency-Key, removed with its dependents by `job delete`), never an orphan.
   */
  /**
   * The user's volume claim, once per namespace per process (made with a new namespace, or before
   * the first job this process submits there); one that exists already is a 409, which is fine.
   */
  private ensureClaim(owner: Owner): Promise<void> {
    let made = this.claims.get(owner.namespace);
    if (!made) {
      made = this.core
        .createNamespacedPersistentVolumeClaim({ namespace: owner.namespace, body: buildUploadsClaim(owner, this.options) })
        .then(
          () => undefined,
          (error) => {
            if (!isStatus(error, 409)) throw error;
          },
        );
      this.claims.set(owner.namespace, made);
      made.catch(() => this.claims.delete(owner.namespace));
    }
    return made;
  }

  /** The names of the namespace's Jobs, from one metadata-only list (no specs, no statuses). */
  private async jobNames(namespace: string): Promise<Set<string>> {
    const { items } = await this.batch.listNamespacedJob({ namespace }, metadataOnly);
    return new Set(items.map((job) => job.metadata?.name ?? ''));
  }

  listOutputs(owner: Owner, job: string): Promise<OutputFile[] | undefined> {
    return this.outputs.list(owner, job);
  }

  readOutput(owner: Owner, job: string, path: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OutputRead> {
    return this.outputs.read(owner, job, path, range, signal);
  }

  archiveOutputs(owner: Owner, job: string, signal: AbortSignal): Promise<Readable> {
    return this.outputs.archive(owner, job, signal);
  }

  deleteOutputs(owner: Owner, job: string): Promise<number | undefined> {
    return this.outputs.remove(owner, job);
  }

  async createJob(objects: JobObjects, code: StoredCode | undefined, options: CreateOptions = {}): Promise<k8s.V1Job> {
    const { namespace, job } = objects;
    const name = job.metadata!.name!;
    // An admin template may ask for suspended Jobs (a queue such as Kueue releases them): keep that.
    const release = job.spec?.suspend !== true;
    return this.createOwner(objects, code, options, {
      kind: 'Job',
      body: { ...job, spec: { ...job.spec!, suspend: true } },
      create: (body) => this.batch.createNamespacedJob({ namespace, body }),
      read: () => this.batch.readNamespacedJob({ name, namespace }),
      remove: () => this.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }),
      isComplete: (existing) => release && existing.spec?.suspend !== true,
      finish: (created) =>
        release
          ? this.batch.patchNamespacedJob({ name, namespace, body: { spec: { suspend: false } } }, mergePatch)
          : Promise.resolve(created),
    });
  }

  /**
   * The CronJob is created first, not suspended (the service may not patch CronJobs, and it needs
   * not): its first Job starts at the next schedule tick, after the Secret and code created right
   * after it, each owned by it from its create on. If the service dies in between, the CronJob's
   * pods wait for the Secret; the user sees and deletes it, or a retry with the key completes it.
   */
  async createCronJob(objects: CronJobObjects, code: StoredCode | undefined, options: CreateOptions = {}): Promise<k8s.V1CronJob> {
    const { namespace, cronJob } = objects;
    const name = cronJob.metadata!.name!;
    return this.createOwner(objects, code, options, {
      kind: 'CronJob',
      body: cronJob,
      create: (body) => this.batch.createNamespacedCronJob({ namespace, body }),
      read: () => this.batch.readNamespacedCronJob({ name, namespace }),
      remove: () => this.batch.deleteNamespacedCronJob({ name, namespace, propagationPolicy: 'Background' }),
      // No marker tells a finished create from an interrupted one: a retry re-runs the (idempotent) steps.
      isComplete: () => false,
      finish: async (created) => created,
    });
  }

  /**
   * Owner first, then its Secret and code in parallel (owned by it in their create calls), then
   * `finish`. A failure removes exactly what this call created. An owner that already exists with
   * this request's idempotency label is the first attempt: it is returned, after completing what
   * that attempt left undone.
   */
  private async createOwner<T extends k8s.V1Job | k8s.V1CronJob>(
    objects: { namespace: string; secret: k8s.V1Secret },
    code: StoredCode | undefined,
    options: CreateOptions,
    owner: {
      kind: 'Job' | 'CronJob';
      body: T;
      create: (body: T) => Promise<T>;
      read: () => Promise<T>;
      remove: () => Promise<unknown>;
      isComplete: (existing: T) => boolean;
      finish: (created: T) => Promise<T>;
    },
  ): Promise<T> {
    const undo = new Undo();
    let created: T;
    let completing = false;
    const user: Owner = { name: objects.secret.metadata?.annotations?.[annotations.username] ?? '', namespace: objects.namespace };
    // Its pods mount the claim (their /outputs): without it they would never be scheduled.
    await this.ensureClaim(user);
    try {
      created = await owner.create(owner.body);
      undo.push(owner.remove);
    } catch (error) {
      const key = owner.body.metadata?.labels?.[labels.idempotencyKey];
      if (!key || !isStatus(error, 409)) throw error;
      created = await owner.read();
      const name = owner.body.metadata!.name!;
      if (created.metadata?.labels?.[labels.idempotencyKey] !== key)
        throw new Conflict(`${owner.kind.toLowerCase()} ${name} already exists; submit again to get another name`);
      if (created.metadata?.annotations?.[annotations.requestSha256] !== owner.body.metadata?.annotations?.[annotations.requestSha256]) {
        throw new Conflict(
          `Idempotency-Key: already used for a different request (${owner.kind.toLowerCase()} ${name}); use a new key for a new submit`,
        );
      }
      if (owner.isComplete(created)) return created;
      completing = true;
    }
    try {
      const reference = ownerReferenceTo(created, owner.kind);
      await settleAll([
        this.createSecret(ownedBy(objects.secret, reference), undo, reference),
        (async () => {
          if (!code) return;
          if (code.kind !== 'configmap') return;
          if (options.upload) await this.writeCode(user, code, options.upload, { ownerRef: reference }, undo);
          else await this.claimUpload(code, reference);
        })(),
      ]);
      return await owner.finish(created);
    } catch (error) {
      // Completing an earlier attempt's owner, which may still be running: what this call made is
      // owned by that owner (never debris), and removing it could pull it from under the other attempt.
      if (!completing) await undo.run();
      throw error;
    }
  }

  async listCronJobs(namespace: string): Promise<k8s.V1CronJob[]> {
    return (await this.batch.listNamespacedCronJob({ namespace })).items;
  }

  async getCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    return this.batch.readNamespacedCronJob({ name, namespace });
  }

  async setCronJobSuspended(namespace: string, name: string, suspended: boolean): Promise<k8s.V1CronJob> {
    return this.batch.patchNamespacedCronJob({ name, namespace, body: { spec: { suspend: suspended } } }, mergePatch);
  }

  async runCronJob(namespace: string, name: string): Promise<k8s.V1Job> {
    const cronJob = await this.batch.readNamespacedCronJob({ name, namespace });
    return this.batch.createNamespacedJob({ namespace, body: buildManualJob(cronJob) });
  }

  async deleteCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    const cronJob = await this.batch.readNamespacedCronJob({ name, namespace });
    await this.batch.deleteNamespacedCronJob({ name, namespace, propagationPolicy: 'Foreground' });
    return cronJob;
  }

  async listJobs(namespace: string, options: ListOptions) {
    if (options.raw) {
      const path = `/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`;
      const query = { limit: options.limit, continue: options.continueToken };
      const list = await getJson<RawList<k8s.V1Job>>(this.kc, this.auth, path, query, { withoutManagedFields: true });
      return { items: list.items, continueToken: list.metadata?.continue || undefined };
    }
    const list = await this.batch.listNamespacedJob({ namespace, limit: options.limit, _continue: options.continueToken });
    return { items: list.items, continueToken: list.metadata?._continue || undefined };
  }

  async listJobsOfAllUsers(options: ListOptions) {
    const labelSelector = `${labels.managedBy}=kbatch`;
    if (options.raw) {
      const query = { labelSelector, limit: options.limit, continue: options.continueToken };
      const list = await getJson<RawList<k8s.V1Job>>(this.kc, this.auth, '/apis/batch/v1/jobs', query, { withoutManagedFields: true });
      return { items: list.items, continueToken: list.metadata?.continue || undefined };
    }
    const list = await this.batch.listJobForAllNamespaces({ labelSelector, limit: options.limit, _continue: options.continueToken });
    return { items: list.items, continueToken: list.metadata?._continue || undefined };
  }

  /** `GET /version`: readable by any authenticated identity, and answered by the API server itself, not etcd. */
  async ping(signal: AbortSignal): Promise<void> {
    const withSignal = {
      pre: async (context: k8s.RequestContext) => (context.setSignal(signal), context),
      post: async (response: k8s.ResponseContext) => response,
    };
    await this.version.getCode({ middleware: [withSignal], middlewareMergeStrategy: 'append' });
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

  /** Events are kept an hour by default; a user's namespace holds few, so one list filtered here is enough. */
  async listEvents(namespace: string, filter: { involvedNames: string[] }): Promise<k8s.CoreV1Event[]> {
    const names = new Set(filter.involvedNames);
    return (await this.core.listNamespacedEvent({ namespace })).items.filter((event) => names.has(event.involvedObject.name ?? ''));
  }

  async getPod(namespace: string, name: string): Promise<k8s.V1Pod> {
    return this.core.readNamespacedPod({ name, namespace });
  }

  async podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
    // Callers that hold the pod already (job logs) name the container, which saves reading it again.
    const container = options.container ?? (await this.getPod(namespace, pod)).spec?.containers[0]?.name ?? 'job';
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new BadGateway('No Kubernetes cluster configured');
    const url = new URL(
      `${cluster.server.replace(/\/+$/, '')}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`,
    );
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
      .request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: 'GET',
        headers: context.getHeaders(),
        signal: controller.signal,
      })
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
      const early = await Promise.race([
        answered.then(
          () => true,
          () => true,
        ),
        new Promise<boolean>((resolve) => (timer = setTimeout(resolve, followAnswerWaitMs, false))),
      ]);
      clearTimeout(timer);
      if (!early) {
        answered.then(
          (body) => output.attach(body),
          (error: Error) => output.fail(error),
        );
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
