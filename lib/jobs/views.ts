import type { CoreV1Event, V1Job, V1Pod } from '@kubernetes/client-node';
import { annotations as annotationKeys } from '../k8s/names.ts';
import { notebookView, type NotebookView } from './notebook.ts';

export type JobState = 'pending' | 'running' | 'succeeded' | 'failed' | 'suspended';

export interface JobSummary {
  name: string;
  namespace: string;
  user: string | undefined;
  state: JobState;
  image: string | undefined;
  command: string[] | undefined;
  args: string[] | undefined;
  createdAt: string | undefined;
  startedAt: string | undefined;
  finishedAt: string | undefined;
  durationSeconds: number | undefined;
  completions: number;
  parallelism: number;
  active: number;
  succeeded: number;
  failed: number;
  labels: Record<string, string>;
}

export interface PodView {
  name: string;
  phase: string;
  node: string | undefined;
  startedAt: string | undefined;
  completionIndex: string | undefined;
  containers: { name: string; state: string; reason?: string; message?: string; exitCode?: number }[];
}

/** A Kubernetes event about the job or one of its pods: scheduling failures, image pulls, back-offs. */
export interface EventView {
  type: string;
  reason: string;
  message: string;
  /** `Job/NAME` or `Pod/NAME`. */
  object: string;
  count: number;
  lastSeen: string | undefined;
}

export interface JobDetail extends JobSummary {
  conditions: { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
  pods: PodView[];
  /** The profile the job was submitted with. */
  profile?: string;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** Names of the job's environment variables; their values live in a Secret and are never shown. */
  envKeys?: string[];
  /** Recent events of the job and its pods, oldest first; absent when the server could not read them. */
  events?: EventView[];
  /** A notebook run (the native `notebook` field, or a recognised papermill command): its parameters per index. */
  notebook?: NotebookView;
}

/**
 * Views read a job either as client-node's model (timestamps are Dates) or as the API server's JSON
 * (strings; the native list reads it raw, see ListOptions.raw): every timestamp goes through here.
 */
function iso(value: Date | string | undefined): string | undefined {
  if (!value) return undefined;
  return new Date(value).toISOString();
}

function finalCondition(job: V1Job) {
  return job.status?.conditions?.find(
    (c) =>
      (c.type === 'Complete' || c.type === 'Failed' || c.type === 'SuccessCriteriaMet' || c.type === 'FailureTarget') &&
      c.status === 'True',
  );
}

export function jobState(job: V1Job): JobState {
  const final = finalCondition(job);
  if (final?.type === 'Complete' || final?.type === 'SuccessCriteriaMet') return 'succeeded';
  if (final?.type === 'Failed' || final?.type === 'FailureTarget') return 'failed';
  if (job.spec?.suspend) return 'suspended';
  if ((job.status?.ready ?? 0) > 0) return 'running';
  if ((job.status?.active ?? 0) > 0 && job.status?.startTime && (job.status?.ready ?? undefined) === undefined) return 'running';
  return 'pending';
}

export function jobSummary(job: V1Job, now: Date = new Date()): JobSummary {
  const container = job.spec?.template.spec?.containers[0];
  const final = finalCondition(job);
  const startedAt = iso(job.status?.startTime);
  const finishedAt = iso(job.status?.completionTime) ?? (final ? iso(final.lastTransitionTime) : undefined);
  const end = finishedAt ? Date.parse(finishedAt) : now.getTime();
  return {
    name: job.metadata?.name ?? '',
    namespace: job.metadata?.namespace ?? '',
    user: job.metadata?.annotations?.[annotationKeys.username],
    state: jobState(job),
    image: container?.image,
    command: container?.command,
    args: container?.args,
    createdAt: new Date(submittedAt(job)).toISOString(),
    startedAt,
    finishedAt,
    durationSeconds: startedAt ? Math.max(0, Math.round((end - Date.parse(startedAt)) / 1000)) : undefined,
    completions: job.spec?.completions ?? 1,
    parallelism: job.spec?.parallelism ?? 1,
    active: job.status?.active ?? 0,
    succeeded: job.status?.succeeded ?? 0,
    failed: job.status?.failed ?? 0,
    labels: job.metadata?.labels ?? {},
  };
}

export function podView(pod: V1Pod): PodView {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  return {
    name: pod.metadata?.name ?? '',
    phase: pod.status?.phase ?? 'Unknown',
    node: pod.spec?.nodeName,
    startedAt: iso(pod.status?.startTime),
    completionIndex: pod.metadata?.labels?.['batch.kubernetes.io/job-completion-index'],
    containers: statuses.map((s) => {
      if (s.state?.terminated)
        return {
          name: s.name,
          state: 'terminated',
          reason: s.state.terminated.reason,
          message: s.state.terminated.message,
          exitCode: s.state.terminated.exitCode,
        };
      if (s.state?.running) return { name: s.name, state: 'running' };
      return { name: s.name, state: 'waiting', reason: s.state?.waiting?.reason, message: s.state?.waiting?.message };
    }),
  };
}

export function eventView(event: CoreV1Event): EventView {
  const last = event.lastTimestamp ?? event.eventTime ?? event.firstTimestamp ?? event.metadata?.creationTimestamp;
  return {
    type: event.type ?? 'Normal',
    reason: event.reason ?? '',
    message: (event.message ?? '').trim(),
    object: `${event.involvedObject.kind ?? ''}/${event.involvedObject.name ?? ''}`,
    count: event.count ?? event.series?.count ?? 1,
    lastSeen: iso(last as Date | string | undefined),
  };
}

export function jobDetail(job: V1Job, pods: V1Pod[], events?: CoreV1Event[]): JobDetail {
  const container = job.spec?.template.spec?.containers[0];
  const resources = container?.resources;
  const quantities = (values: Record<string, unknown> | undefined) =>
    values && Object.keys(values).length ? Object.fromEntries(Object.entries(values).map(([k, v]) => [k, String(v)])) : undefined;
  const requests = quantities(resources?.requests);
  const limits = quantities(resources?.limits);
  const detail: JobDetail = {
    ...jobSummary(job),
    conditions: (job.status?.conditions ?? []).map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: c.message,
      lastTransitionTime: iso(c.lastTransitionTime),
    })),
    pods: pods.map(podView),
    profile: job.metadata?.annotations?.[annotationKeys.profile],
    resources: requests || limits ? { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) } : undefined,
    envKeys: (container?.env ?? []).map((e) => e.name),
  };
  const notebook = notebookView(job.metadata?.annotations?.[annotationKeys.notebook]);
  if (notebook) detail.notebook = notebook;
  if (events) {
    detail.events = events.map(eventView).sort((a, b) => (a.lastSeen ?? '').localeCompare(b.lastSeen ?? ''));
  }
  return detail;
}

export function submittedAt(job: V1Job): number {
  const precise = job.metadata?.annotations?.[annotationKeys.submittedAt];
  return precise ? Date.parse(precise) : new Date(job.metadata?.creationTimestamp ?? 0).getTime();
}

/** Newest first, as people expect from a job list; ties broken by name so pages are stable. */
export function newestFirst(jobs: V1Job[]): V1Job[] {
  return [...jobs].sort((a, b) => submittedAt(b) - submittedAt(a) || (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
}
