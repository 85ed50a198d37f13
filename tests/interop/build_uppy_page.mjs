// Bundle the Uppy test page with esbuild from the locked npm packages: node build_uppy_page.mjs '{"outdir": ...}'.
import { copyFileSync, mkdirSync } from 'node:fs'
import { build } from 'esbuild'

const { outdir } = JSON.parse(process.argv[2])
mkdirSync(outdir, { recursive: true })
await build({
  entryPoints: [new URL('./uppy_page/entry.js', import.meta.url).pathname],
  bundle: true,
  format: 'iife',
  target: 'chrome120',
  outfile: `${outdir}/uppy-page.js`,
  logLevel: 'error',
})
copyFileSync(new URL('./uppy_page/index.html', import.meta.url), `${outdir}/index.html`)
process.stdout.write(`${JSON.stringify({ outdir })}\n`)
