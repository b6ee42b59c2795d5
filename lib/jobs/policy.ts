import { compareQuantities, isNegative, isWhole, parseQuantity, type Quantity } from '../k8s/quantity.ts';
import type { NodeSelectorTerm, ResourceSpec, Toleration } from './schemas.ts';
import { BadRequest } from '../http/errors.ts';

function fail(field: string, message: string): never {
  throw new BadRequest(`${field}: ${message}`, field);
}

/**
 * What users may ask of the cluster, decided by the admin (lib/config.ts, README "Job limits").
 * Profiles are checked against the same resource maximums when the server starts.
 */
export interface JobPolicy {
  /** Per pod: resource name to its largest request or limit. Its keys are the resources users may name. */
  maxJobResources: Record<string, string>;
  /** Taint keys users may tolerate themselves; anything else only through a profile. */
  allowedTolerationKeys: string[];
  /** Node label keys users may require in nodeAffinityRequired; anything else only through a profile. */
  allowedNodeLabelKeys: string[];
}

/** Per pod; generous for one batch job, far from a whole cluster. */
export const defaultMaxJobResources: Record<string, string> = {
  cpu: '64',
  memory: '256Gi',
  'ephemeral-storage': '100Gi',
  'nvidia.com/gpu': '8',
  'amd.com/gpu': '8',
};

export const defaultJobPolicy: JobPolicy = { maxJobResources: defaultMaxJobResources, allowedTolerationKeys: [], allowedNodeLabelKeys: [] };

/** Resources Kubernetes itself defines may be fractional; every other (extended) resource is counted in whole units. */
function isNativeResource(name: string): boolean {
  return (
    ['cpu', 'memory', 'ephemeral-storage', 'storage'].includes(name) || name.startsWith('hugepages-') || name.startsWith('kubernetes.io/')
  );
}

/** Parses one quantity of a request or limit; negative or unparsable values and fractional GPUs are refused. */
export function quantityOf(value: string, resource: string, field: string): Quantity {
  const quantity = parseQuantity(value);
  if (!quantity) fail(field, `"${value}" is not a valid quantity (e.g. 500m, 2, 1.5Gi)`);
  if (isNegative(quantity)) fail(field, 'must not be negative');
  if (!isNativeResource(resource) && !isWhole(quantity)) fail(field, `must be a whole number (${resource} is counted in units)`);
  return quantity;
}

/** Every quantity parses, and each limit is at least its request (Kubernetes would refuse the pod later, after objects were stored). */
export function checkResourceShape(resources: ResourceSpec | undefined, field = 'resources'): void {
  const requests = new Map(
    Object.entries(resources?.requests ?? {}).map(([name, value]) => [name, quantityOf(value, name, `${field}.requests.${name}`)]),
  );
  for (const [name, value] of Object.entries(resources?.limits ?? {})) {
    const limit = quantityOf(value, name, `${field}.limits.${name}`);
    const request = requests.get(name);
    if (request && compareQuantities(limit, request) < 0)
      fail(`${field}.limits.${name}`, `${value} is less than the request (${request.text}); a limit must be at least its request`);
  }
}

/** Each named resource is on the admin's list and at most its maximum. */
export function checkResourceMaximums(resources: ResourceSpec | undefined, policy: JobPolicy, field = 'resources'): void {
  const maximums = new Map(Object.entries(policy.maxJobResources));
  for (const kind of ['requests', 'limits'] as const) {
    for (const [name, value] of Object.entries(resources?.[kind] ?? {})) {
      const path = `${field}.${kind}.${name}`;
      const max = maximums.get(name);
      if (max === undefined) fail(path, `is not a resource jobs may request here (allowed: ${[...maximums.keys()].join(', ') || 'none'})`);
      const limit = parseQuantity(max)!;
      if (compareQuantities(quantityOf(value, name, path), limit) > 0) fail(path, `${value} is more than the maximum per job pod (${max})`);
    }
  }
}

function sameToleration(a: Toleration, b: Toleration): boolean {
  const norm = (t: Toleration) => [t.key ?? '', t.operator ?? 'Equal', t.value ?? '', t.effect ?? '', t.tolerationSeconds ?? null];
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

/** A toleration without a key, as Kubernetes reads it, tolerates every taint (control plane, reserved nodes). */
export function isWildcardToleration(toleration: Toleration): boolean {
  return !toleration.key;
}

/**
 * The scheduling a user asked for: tolerations and node affinity only for keys the admin allows, or
 * exactly as a profile sets them (the upstream CLI bakes its profile into the manifest client-side);
 * never a wildcard toleration and never matchFields (which pins a pod to a node by name).
 */
export function checkScheduling(
  spec: { tolerations?: Toleration[]; nodeAffinityRequired?: NodeSelectorTerm[] },
  policy: JobPolicy,
  fromProfiles: { tolerations: Toleration[]; terms: NodeSelectorTerm[] },
): void {
  const tolerationKeys = new Set(policy.allowedTolerationKeys);
  const hint = 'choose a profile that sets it (kbatch profiles)';
  (spec.tolerations ?? []).forEach((toleration, i) => {
    const field = `tolerations[${i}]`;
    if (isWildcardToleration(toleration)) fail(field, 'a toleration without a key tolerates every taint and is never allowed');
    if (fromProfiles.tolerations.some((allowed) => sameToleration(allowed, toleration))) return;
    if (!tolerationKeys.has(toleration.key!)) {
      fail(
        `${field}.key`,
        `"${toleration.key}" is not a taint users may tolerate (${tolerationKeys.size ? `allowed: ${[...tolerationKeys].join(', ')}` : 'the admin allows none'}); ${hint}`,
      );
    }
  });
  const labelKeys = new Set(policy.allowedNodeLabelKeys);
  const profileTerms = new Set(fromProfiles.terms.map((term) => JSON.stringify(canonicalTerm(term))));
  (spec.nodeAffinityRequired ?? []).forEach((term, i) => {
    const field = `nodeAffinityRequired[${i}]`;
    if (profileTerms.has(JSON.stringify(canonicalTerm(term)))) return;
    if (term.matchFields?.length) fail(`${field}.matchFields`, `selects nodes by name, which users may not do; ${hint}`);
    term.matchExpressions?.forEach((requirement, j) => {
      if (!labelKeys.has(requirement.key)) {
        fail(
          `${field}.matchExpressions[${j}].key`,
          `"${requirement.key}" is not a node label users may select on (${labelKeys.size ? `allowed: ${[...labelKeys].join(', ')}` : 'the admin allows none'}); ${hint}`,
        );
      }
    });
  });
}

function canonicalTerm(term: NodeSelectorTerm) {
  const requirement = (r: { key: string; operator: string; values?: string[] }) => [r.key, r.operator, r.values ?? []];
  return [(term.matchExpressions ?? []).map(requirement), (term.matchFields ?? []).map(requirement)];
}

/** The policy in a settings object; settings that leave a field out get its default. */
export function jobPolicyOf(settings: Partial<JobPolicy>): JobPolicy {
  return {
    maxJobResources: settings.maxJobResources ?? defaultJobPolicy.maxJobResources,
    allowedTolerationKeys: settings.allowedTolerationKeys ?? defaultJobPolicy.allowedTolerationKeys,
    allowedNodeLabelKeys: settings.allowedNodeLabelKeys ?? defaultJobPolicy.allowedNodeLabelKeys,
  };
}
