// Rebuild the upload page's script, server/http/assets/page.js, from server/http/assets/src/app.js and the
// tus-js-client pinned in tests/interop/package-lock.json, with the esbuild pinned there too:
//
//   (cd tests/interop && npm ci) && node scripts/build_page.mjs            # writes the committed files
//   node scripts/build_page.mjs OUTDIR                                     # writes them elsewhere (tests)
//
// The bundle is committed and shipped in the wheel, so the server never needs Node or a network. Its first
// line names the versions it was built from; page-licenses.txt carries the licenses of what it bundles.
// tests/interop/test_page_bundle.py rebuilds it and fails when the committed files differ.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const interop = join(root, 'tests', 'interop')
const assets = join(root, 'server', 'http', 'assets')
const outdir = process.argv[2] ?? assets
const esbuild = createRequire(join(interop, 'package.json'))('esbuild')
const lock = JSON.parse(readFileSync(join(interop, 'package-lock.json'), 'utf8'))

function locked(name) {
  return lock.packages[`node_modules/${name}`].version
}

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [relative(root, join(assets, 'src', 'app.js'))],
  nodePaths: [join(interop, 'node_modules')],
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome109', 'firefox115', 'safari15'],
  legalComments: 'none', // the licenses go to page-licenses.txt, whole
  banner: {
    js: `/* tuskit upload page; bundled by esbuild ${esbuild.version} with tus-js-client ${locked('tus-js-client')}; licenses: page-licenses.txt */`,
  },
  metafile: true,
  write: false,
  logLevel: 'error',
})

// every npm package that ended up in the bundle, with its license text
const packages = new Map()
for (const input of Object.keys(result.metafile.inputs)) {
  const at = input.lastIndexOf('node_modules/')
  if (at < 0) continue
  const rest = input.slice(at + 'node_modules/'.length).split('/')
  const name = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  packages.set(name, join(root, input.slice(0, at), 'node_modules', name))
}
const notices = [...packages.entries()]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([name, folder]) => {
    const manifest = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8'))
    const licenseFile = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license', 'LICENCE']
      .map((file) => join(folder, file))
      .find((path) => {
        try {
          readFileSync(path)
          return true
        } catch {
          return false
        }
      })
    const text = licenseFile ? readFileSync(licenseFile, 'utf8').trim() : `(${manifest.license}; no license file)`
    return `${name} ${manifest.version} (${manifest.license})\n${'-'.repeat(72)}\n${text}\n`
  })

mkdirSync(outdir, { recursive: true })
writeFileSync(join(outdir, 'page.js'), result.outputFiles[0].contents)
writeFileSync(
  join(outdir, 'page-licenses.txt'),
  `Third-party code bundled into page.js by scripts/build_page.mjs:\n\n${notices.join('\n')}`,
)
process.stdout.write(`${JSON.stringify({ outdir, bytes: result.outputFiles[0].contents.length, packages: [...packages.keys()] })}\n`)
