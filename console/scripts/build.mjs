// Builds dist/: index.html, assets/console.js (Preact + uPlot + the pages, minified ES module)
// and assets/console.css (uPlot's stylesheet + ours). The server embeds dist/ (src/routes/console.rs),
// so the built files are committed. Fails when the total exceeds 100 KB gzipped (issue 13).
// Usage: node scripts/build.mjs   Output is deterministic for the same sources and tool versions.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist');
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
const js = await build({
  absWorkingDir: root,
  entryPoints: ['src/main.tsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  platform: 'browser',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  charset: 'utf8',
  write: false,
  logLevel: 'warning',
});
const css = await build({
  absWorkingDir: root,
  stdin: { contents: "@import 'uplot/dist/uPlot.min.css';\n@import './src/style.css';\n", resolveDir: root, loader: 'css' },
  bundle: true,
  minify: true,
  write: false,
  logLevel: 'warning',
});
const files = {
  'index.html': readFileSync(join(root, 'index.html')),
  'assets/console.js': Buffer.from(js.outputFiles[0].contents),
  'assets/console.css': Buffer.from(css.outputFiles[0].contents),
};
let total = 0;
for (const [name, body] of Object.entries(files)) {
  writeFileSync(join(out, name), body);
  const gz = gzipSync(body, { level: 9 }).length;
  total += gz;
  console.log(`${name}: ${body.length} B, ${gz} B gzipped`);
}
console.log(`total: ${total} B gzipped (budget 102400)`);
if (total > 100 * 1024) {
  console.error('the console exceeds its budget of 100 KB gzipped');
  process.exit(1);
}
