import { parse as parseYaml } from 'yaml';
import { ConfigError, readOptionalFile } from '../config.ts';
import { camelCaseKeys } from '../k8s/wire.ts';
import { checkResourceMaximums, defaultJobPolicy, isWildcardToleration, jobPolicyOf, type JobPolicy } from './policy.ts';
import { parseJobSpec, type NodeSelectorTerm, type ResourceSpec, type Toleration } from './spec.ts';

/** An admin-defined profile (KBATCH_PROFILE_FILE), applied by the server so users cannot skip it. */
export interface Profile {
  description?: string;
  image?: string;
  resources?: ResourceSpec;
  tolerations?: Toleration[];
  nodeAffinityRequired?: NodeSelectorTerm[];
}

/**
 * Profile names are user input at submit time: a Map, so `constructor` or `__proto__` find nothing.
 * A plain object (tests write `{}`) is accepted too and read through own properties only (profileNamed).
 */
export type Profiles = ReadonlyMap<string, Profile> | Readonly<Record<string, Profile>>;

export function profileNamed(profiles: Profiles, name: string): Profile | undefined {
  if (profiles instanceof Map) return profiles.get(name);
  return Object.hasOwn(profiles, name) ? (profiles as Record<string, Profile>)[name] : undefined;
}

export function profileNames(profiles: Profiles): string[] {
  return profiles instanceof Map ? [...profiles.keys()] : Object.keys(profiles);
}

export function allProfiles(profiles: Profiles): Profile[] {
  return profiles instanceof Map ? [...profiles.values()] : Object.values(profiles);
}

/** The raw profile document, served at /profiles/ in the shape upstream clients read. */
export interface AdminConfig {
  profiles: Profiles;
  rawProfiles: Record<string, unknown>;
  jobTemplate: Record<string, unknown> | undefined;
}

const profileKeys = new Set([
  'description',
  'display_name',
  'image',
  'resources',
  'tolerations',
  'node_affinity_required',
  'nodeAffinityRequired',
]);

/**
 * Profiles are checked with the user-spec validators, so a profile can never hold what a user may
 * not ask for, and against the per-job maximums, so a profile cannot exceed them either. Only the
 * key restrictions on tolerations and node affinity do not apply: profiles are how admins grant those.
 */
export function parseProfiles(
  text: string | undefined,
  source = 'profiles',
  policy: JobPolicy = defaultJobPolicy,
): { profiles: Map<string, Profile>; raw: Record<string, unknown> } {
  const profiles = new Map<string, Profile>();
  if (!text) return { profiles, raw: {} };
  const raw = parseYaml(text) as unknown;
  if (raw === null || raw === undefined) return { profiles, raw: {} };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: must be a mapping of profile name to settings`);
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (!value || typeof value !== 'object' || Array.isArray(value))
      throw new ConfigError(`${source}: profile "${name}" must be a mapping`);
    const entry = value as Record<string, unknown>;
    for (const key of Object.keys(entry))
      if (!profileKeys.has(key)) throw new ConfigError(`${source}: profile "${name}" has unknown key "${key}"`);
    try {
      const spec = parseJobSpec({
        name: 'profile',
        image: entry.image,
        resources: entry.resources,
        tolerations: entry.tolerations,
        nodeAffinityRequired: entry.node_affinity_required ?? entry.nodeAffinityRequired,
      });
      checkResourceMaximums(spec.resources, policy);
      spec.tolerations?.forEach((toleration, i) => {
        if (isWildcardToleration(toleration))
          throw new Error(`tolerations[${i}]: a toleration without a key tolerates every taint and is never allowed`);
      });
      profiles.set(name, {
        description: typeof entry.description === 'string' ? entry.description : undefined,
        image: spec.image,
        resources: spec.resources,
        tolerations: spec.tolerations,
        nodeAffinityRequired: spec.nodeAffinityRequired,
      });
    } catch (error) {
      throw new ConfigError(`${source}: profile "${name}": ${(error as Error).message}`);
    }
  }
  return { profiles, raw: raw as Record<string, unknown> };
}

export function parseJobTemplate(text: string | undefined, source = 'job template'): Record<string, unknown> | undefined {
  if (!text) return undefined;
  const raw = parseYaml(text) as unknown;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${source}: must be a mapping shaped like a batch/v1 Job`);
  const template = camelCaseKeys(raw) as Record<string, unknown>;
  for (const key of Object.keys(template)) {
    if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(key)) throw new ConfigError(`${source}: unknown top-level key "${key}"`);
  }
  if (template.kind !== undefined && template.kind !== 'Job') throw new ConfigError(`${source}: kind must be Job`);
  delete template.apiVersion;
  delete template.kind;
  return template;
}

export function loadAdminConfig(settings: { profileFile?: string; jobTemplateFile?: string } & Partial<JobPolicy>): AdminConfig {
  const policy = jobPolicyOf(settings);
  const { profiles, raw } = parseProfiles(readOptionalFile(settings.profileFile, 'KBATCH_PROFILE_FILE'), settings.profileFile, policy);
  const jobTemplate = parseJobTemplate(readOptionalFile(settings.jobTemplateFile, 'KBATCH_JOB_TEMPLATE_FILE'), settings.jobTemplateFile);
  return { profiles, rawProfiles: raw, jobTemplate };
}

/**
 * Upstream's merge rule: objects merge recursively, lists concatenate (user items first), and
 * for anything else the admin template wins.
 */
export function mergeTemplate(base: unknown, template: unknown): unknown {
  if (Array.isArray(base) && Array.isArray(template)) return [...base, ...template];
  if (base && template && typeof base === 'object' && typeof template === 'object' && !Array.isArray(base) && !Array.isArray(template)) {
    const result: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [key, value] of Object.entries(template as Record<string, unknown>)) {
      const merged = Object.hasOwn(result, key) ? mergeTemplate(result[key], value) : value;
      Object.defineProperty(result, key, { value: merged, enumerable: true, writable: true, configurable: true });
    }
    return result;
  }
  return template === undefined ? base : template;
}
