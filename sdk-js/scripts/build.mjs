// Builds dist/: consentry.js (IIFE + UI), consentry.mjs (ESM + UI),
// consentry.core.mjs (headless ESM) and the .d.ts files. esbuild bundles, terser
// minifies (a few hundred bytes smaller after gzip than esbuild's minifier: the
// headless core has a 5 KB budget).
// Usage: node scripts/build.mjs [--outdir DIR]   (default: dist)
// Output is deterministic: the same sources and tool versions give the same bytes.
import { build } from 'esbuild';
import { minify } from 'terser';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const i = process.argv.indexOf('--outdir');
const out = resolve(root, i > 0 ? process.argv[i + 1] : 'dist');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const common = {
  absWorkingDir: root,
  bundle: true,
  // whitespace and identifiers are left to terser
  minifySyntax: true,
  target: 'es2020',
  platform: 'browser',
  charset: 'utf8',
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
};
const bundle = async (entry, format, file) => {
  const { outputFiles } = await build({ ...common, entryPoints: [entry], format });
  const { code } = await minify(outputFiles[0].text, {
    ecma: 2020,
    module: format == 'esm',
    compress: { passes: 3, pure_getters: true, unsafe_arrows: true },
    mangle: true,
    format: { preamble: `/*! consentry ${version} | Apache-2.0 */`, ascii_only: false },
  });
  writeFileSync(join(out, file), code + '\n');
};
await Promise.all([
  bundle('src/iife.ts', 'iife', 'consentry.js'),
  bundle('src/index.ts', 'esm', 'consentry.mjs'),
  bundle('src/headless.ts', 'esm', 'consentry.core.mjs'),
  bundle('src/headless-gcm.ts', 'esm', 'consentry.core-gcm.mjs'),
  bundle('src/audit.ts', 'esm', 'consentry.audit.mjs'),
]);

// Declarations (tsc also type-checks the sources here).
execFileSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json'),
    '--declaration', '--emitDeclarationOnly', '--outDir', join(out, 'types')],
  { stdio: 'inherit', cwd: root },
);
writeFileSync(join(out, 'consentry.d.ts'), "export * from './types/index';\n");
writeFileSync(join(out, 'consentry.core.d.ts'), "export * from './types/headless';\n");
writeFileSync(join(out, 'consentry.core-gcm.d.ts'), "export * from './types/headless-gcm';\n");
writeFileSync(
  join(out, 'consentry.global.d.ts'),
  "// Types of window.Consentry for pages using the script-tag build consentry.js.\nimport './types/iife';\nexport type * from './types/index';\n",
);
