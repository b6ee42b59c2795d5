#!/usr/bin/env node
// The CLI is TypeScript like the rest of the repo; tsx compiles it on the fly (Node 20 and 24 alike).
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
