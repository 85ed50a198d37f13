// Uppy (@uppy/core + @uppy/tus) wired to a file input; bundled by build_uppy_page.mjs, no CDN.
// The outcome of uppy.upload() is published as window.uppyResult (and in #status) for the test to read.
import Uppy from '@uppy/core'
import Tus from '@uppy/tus'

const params = new URLSearchParams(location.search)
const uppy = new Uppy({ autoProceed: false })
uppy.use(Tus, {
  endpoint: params.get('endpoint'),
  chunkSize: Number(params.get('chunkSize') || Infinity),
  retryDelays: JSON.parse(params.get('retryDelays') || '[0, 300, 1000]'),
  headers: params.get('token') ? { Authorization: `Bearer ${params.get('token')}` } : {},
})

const input = document.getElementById('files')
const status = document.getElementById('status')
input.addEventListener('change', async () => {
  for (const file of input.files) {
    uppy.addFile({ name: file.name, type: file.type, data: file, source: 'file input' })
  }
  status.textContent = 'uploading'
  const result = await uppy.upload()
  window.uppyResult = {
    successful: result.successful.map((f) => ({ name: f.name, url: f.uploadURL, size: f.size, type: f.type })),
    failed: result.failed.map((f) => ({ name: f.name, error: String(f.error) })),
  }
  status.textContent = result.failed.length ? 'failed' : 'done'
})
