import type { ValidateFunction } from 'ajv/dist/2020.js';

/**
 * The validators the build precompiled, by schema key (lib/jobs/validation.ts `schemaKey`). Run
 * from the sources (tsx, the tests) there are none and every checker compiles its schema with Ajv;
 * scripts/bundle.ts replaces this module in the bundles with Ajv's standalone code for the request
 * schemas, so a bundled function never runs Ajv's compiler.
 */
export function precompiledValidator(key: string): ValidateFunction | undefined {
  void key;
  return undefined;
}
