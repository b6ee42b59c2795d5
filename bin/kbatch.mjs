#!/usr/bin/env node
// Runs the CLI bundled by `npm run build` (npm install and npm ci run it through `prepare`):
// one JavaScript file, so no TypeScript is compiled on any call.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/kbatch.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write(`kbatch: the CLI is not built (${bundle.pathname} is missing)\nhint: run npm run build in ${new URL('..', import.meta.url).pathname}\n`);
  process.exit(1);
}
await import(bundle.href);
