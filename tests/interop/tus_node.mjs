// Drive tus-js-client (Node) against a tus endpoint for the pytest interop suite.
//
// Usage: node tus_node.mjs '<json job>'. The job names a scenario and its inputs; the script prints one JSON
// line with what the test needs to check on the server (the upload URL, offsets seen by the client) and
// exits 0, or prints {"error": ...} and exits 1. Python checks the stored bytes; this only drives the client.
import * as fs from 'node:fs'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import { FileUrlStorage, Upload } from 'tus-js-client'

const job = JSON.parse(process.argv[2])

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

// Every response the client got: which protocol answered it (the IETF draft's responses name their
// interop version), so a test can tell the draft was spoken throughout.
const responses = []

function options(extra) {
  return {
    endpoint: job.endpoint,
    headers: job.headers ?? {},
    metadata: { filename: job.name ?? 'file.bin', ...(job.metadata ?? {}) },
    retryDelays: [100, 300, 1000],
    protocol: job.protocol ?? 'tus-v1',
    onAfterResponse: (req, res) => {
      responses.push({
        method: req.getMethod(),
        status: res.getStatus(),
        interop: res.getHeader('Upload-Draft-Interop-Version') ?? null,
      })
    },
    ...extra,
  }
}

// Run one upload to its end; resolves with the upload, rejects with the client's error.
function run(source, extra) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(source, options({ ...extra, onSuccess: () => resolve(upload), onError: reject }))
    upload.start()
  })
}

// A Readable without a size or a path: tus-js-client cannot know its length in advance.
function anonymousStream(path) {
  const data = fs.readFileSync(path)
  const pieces = []
  for (let at = 0; at < data.length; at += 100_000) pieces.push(data.subarray(at, at + 100_000))
  return Readable.from(pieces)
}

const scenarios = {
  async buffer() {
    const upload = await run(fs.readFileSync(job.path), { chunkSize: job.chunkSize ?? Infinity })
    return { url: upload.url }
  },

  async fileStream() {
    const upload = await run(fs.createReadStream(job.path), { chunkSize: job.chunkSize })
    return { url: upload.url }
  },

  async dataDuringCreation() {
    const upload = await run(fs.readFileSync(job.path), { uploadDataDuringCreation: true })
    return { url: upload.url }
  },

  async parallel() {
    const upload = await run(fs.readFileSync(job.path), {
      parallelUploads: 4,
      metadataForPartialUploads: { part: 'yes' },
    })
    return { url: upload.url }
  },

  async deferredLength() {
    const upload = await run(anonymousStream(job.path), { uploadLengthDeferred: true, chunkSize: job.chunkSize })
    return { url: upload.url }
  },

  // Start a stored-fingerprint upload and abort it after the first accepted chunk (job.terminate: with
  // abort(true), which also DELETEs the upload).
  async startThenAbort() {
    return new Promise((resolve, reject) => {
      const upload = new Upload(
        fs.createReadStream(job.path),
        options({
          chunkSize: job.chunkSize,
          urlStorage: new FileUrlStorage(job.storage),
          onChunkComplete: (_size, accepted) => {
            upload.abort(job.terminate ?? false).then(() => resolve({ url: upload.url, accepted }), reject)
          },
          onSuccess: () => reject(new Error('upload finished before it could be aborted')),
          onError: reject,
        }),
      )
      upload.start()
    })
  },

  // A new process finds the stored upload by fingerprint and resumes it where the server stands.
  async resume() {
    return new Promise((resolve, reject) => {
      let resumedFrom = null
      const upload = new Upload(
        fs.createReadStream(job.path),
        options({
          chunkSize: job.chunkSize,
          urlStorage: new FileUrlStorage(job.storage),
          removeFingerprintOnSuccess: job.removeFingerprintOnSuccess ?? false,
          onChunkComplete: (size, accepted) => {
            resumedFrom ??= accepted - size
          },
          onSuccess: () => resolve({ url: upload.url, resumedFrom, previous }),
          onError: reject,
        }),
      )
      let previous = 0
      upload
        .findPreviousUploads()
        .then((found) => {
          previous = found.length
          if (found.length > 0) upload.resumeFromPreviousUpload(found[0])
          upload.start()
        })
        .catch(reject)
    })
  },

  // Upload through a server restart: after the first chunk the client holds its next PATCH until the test
  // says "go" on stdin (and takes the server down). Every request and status is reported as it happens.
  async throughRestart() {
    const lines = createInterface({ input: process.stdin })
    const stdin = lines[Symbol.asyncIterator]()
    let chunks = 0
    let held = false
    const finished = new Promise((resolve, reject) => {
      const upload = new Upload(
        fs.createReadStream(job.path),
        options({
          chunkSize: job.chunkSize,
          retryDelays: [200, 500, 1000, 2000, 3000, 5000, 8000],
          onBeforeRequest: async (req) => {
            if (chunks === 1 && !held && req.getMethod() === 'PATCH') {
              held = true
              say({ holding: true })
              await stdin.next()
            }
            say({ request: req.getMethod() })
          },
          onAfterResponse: (req, res) => say({ response: req.getMethod(), status: res.getStatus() }),
          onChunkComplete: (_size, accepted) => {
            chunks += 1
            say({ accepted })
          },
          onSuccess: () => resolve({ url: upload.url }),
          onError: reject,
        }),
      )
      upload.start()
    })
    try {
      return await finished
    } finally {
      lines.close() // an open stdin would keep node running
      process.stdin.destroy()
    }
  },

  // What the URL storage holds for this file now (after removeFingerprintOnSuccess it should be nothing).
  async stored() {
    const storage = new FileUrlStorage(job.storage)
    return { uploads: (await storage.findAllUploads()).map((u) => u.uploadUrl) }
  },
}

try {
  say({ ...(await scenarios[job.scenario]()), responses })
} catch (err) {
  say({ error: String(err?.message ?? err) })
  process.exitCode = 1
}
