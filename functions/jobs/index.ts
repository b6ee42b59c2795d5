import { isMainModule, main } from '../../lib/http/main.ts';

/** The kbatch-jobs Knative Service: its routes, registered as a functions-framework target. */
export const target = 'kbatch-jobs';
export const handler = await main({ target, routes: 'jobs', serve: isMainModule(import.meta.url) });
