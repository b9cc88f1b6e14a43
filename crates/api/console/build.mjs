// Builds the console into exactly three files that witness embeds and serves:
//   OUTDIR/index.html  (served at /)
//   OUTDIR/app.js      (served at /assets/app.js)
//   OUTDIR/app.css     (served at /assets/app.css; the CSS that src/ and asciinema-player import)
//
// Usage: node build.mjs OUTDIR   (or: npm run build -- OUTDIR)
//
// The output is minified, without source maps, and the same bytes for the same sources, so the
// binary that embeds it builds reproducibly. It never fetches anything: all code comes from
// src/ and node_modules/.

import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

const outArg = process.argv[2];
if (!outArg) {
  console.error('usage: node build.mjs OUTDIR');
  process.exit(2);
}
const outdir = resolve(outArg);

await mkdir(outdir, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: [join(here, 'src/main.js')],
  outfile: join(outdir, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // Browsers that run asciinema-player (WebAssembly, ES2020) run this too.
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  // Licence comments of bundled packages go to the end of the file rather than being dropped.
  legalComments: 'eof',
  // Any font or image a dependency's CSS refers to is inlined, so the output stays three files.
  loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl', '.png': 'dataurl' },
  logLevel: 'warning',
  metafile: true,
});
await copyFile(join(here, 'src/index.html'), join(outdir, 'index.html'));

// Fail loudly if esbuild ever writes more than app.js and app.css (a chunk, a font file): witness
// serves only these.
const written = Object.keys(result.metafile.outputs).map((path) => path.split('/').pop()).sort();
if (written.join() !== 'app.css,app.js') {
  console.error(`build.mjs: esbuild wrote ${written.join(', ')}; witness serves only app.js and app.css`);
  process.exit(1);
}
