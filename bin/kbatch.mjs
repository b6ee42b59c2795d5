#!/usr/bin/env node
// Runs the CLI bundled by `npm run build` (npm install and npm ci run it through `prepare`):
// one JavaScript file, so no TypeScript is compiled on any call.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/kbatch.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write(
    `kbatch: the CLI is not built (${bundle.pathname} is missing)\nhint: run npm run build in ${new URL('..', import.meta.url).pathname}\n`,
  );
  process.exit(1);
}
// node-fetch 2 (under cross-fetch) uses APIs Node 22+ marks deprecated (punycode, url.parse); users
// should see the CLI's own output, not its dependencies' notices.
process.noDeprecation = true;
await import(bundle.href);
