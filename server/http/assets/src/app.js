// The upload page served by `tuskit server` at `/`: drop files or folders to upload them resumably with
// tus-js-client, and watch the caller's uploads (from GET /uploads) move along live (from GET /events).
//
// Bundled with tus-js-client into ../page.js by scripts/build_page.mjs; never loaded from a CDN. Everything a
// client sent (names, reasons) reaches the DOM as text, never as HTML.
import { Upload } from 'tus-js-client'

const config = JSON.parse(document.body.dataset.config)
const $ = (id) => document.getElementById(id)
const TOKEN_KEY = 'tuskit-token'

let token = config.tokens ? (sessionStorage.getItem(TOKEN_KEY) ?? '') : ''
const rows = new Map() // upload id -> its row
const thumbnails = new Map() // upload id -> object URL of its thumbnail
let firstPage = [] // ids, newest first, as the last refresh listed them
let olderPages = [] // ids loaded with "Show older uploads"
let olderCursor = null
let pending = [] // rows of uploads started here that have no id yet
let events = null
let poller = null
let refreshTimer = null

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {}
}

function setStatus(text, kind = '') {
  $('status').textContent = text
  $('status').dataset.kind = kind
}

function humanBytes(n) {
  if (n == null) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i += 1
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

// ---- rows --------------------------------------------------------------------------------------------

function makeRow(name) {
  const row = document.createElement('li')
  row.className = 'upload'
  const thumb = document.createElement('div')
  thumb.className = 'thumb'
  const body = document.createElement('div')
  body.className = 'body'
  const title = document.createElement('span')
  title.className = 'name'
  title.textContent = name
  const meta = document.createElement('span')
  meta.className = 'meta'
  const bar = document.createElement('progress')
  bar.max = 1
  bar.value = 0
  body.append(title, meta, bar)
  row.append(thumb, body)
  return row
}

function part(row, cls) {
  return row.querySelector(`.${cls}`)
}

function showProgress(row, offset, size) {
  row.dataset.offset = String(offset)
  if (size) part(row, 'body').querySelector('progress').value = offset / size
  part(row, 'meta').textContent =
    size ? `${humanBytes(offset)} of ${humanBytes(size)} (${Math.floor((100 * offset) / size)}%)` : humanBytes(offset)
}

function showState(row, state, detail) {
  // processing: the server has every byte and is checking what arrived (type, thumbnails)
  const words = { processing: 'checking', processed: 'done', failed: 'failed' }
  row.dataset.state = state
  part(row, 'meta').textContent = [words[state] ?? state, detail].filter(Boolean).join(': ')
  if (state !== 'failed') part(row, 'body').querySelector('progress').value = 1
}

function fillRow(row, item) {
  row.dataset.id = item.id
  row.dataset.url = item.url
  part(row, 'name').textContent = item.relativePath || item.filename || item.id
  part(row, 'name').title = item.sha256 ? `sha256 ${item.sha256}` : ''
  if (item.state !== 'uploading') {
    showState(row, item.state, item.state === 'failed' ? item.reason : humanBytes(item.size))
  } else if (!row.dataset.local) {
    // an upload running elsewhere (or before a reload); one running here reports its own progress
    row.dataset.state = 'uploading'
    showProgress(row, item.offset, item.size)
  }
  if (item.thumbnail) showThumbnail(row, item)
}

async function showThumbnail(row, item) {
  if (!thumbnails.has(item.id)) {
    thumbnails.set(item.id, null) // being fetched
    // fetched with the token (an <img src> cannot send one), then shown from memory
    const answer = await fetch(item.thumbnail, { headers: authHeaders() })
    if (!answer.ok) {
      thumbnails.delete(item.id)
      return
    }
    thumbnails.set(item.id, URL.createObjectURL(await answer.blob()))
  }
  const src = thumbnails.get(item.id)
  if (!src || part(row, 'thumb').querySelector('img')) return
  const img = document.createElement('img')
  img.alt = ''
  img.src = src
  part(row, 'thumb').append(img)
}

function render() {
  const ids = [...new Set([...firstPage, ...olderPages])]
  $('uploads').replaceChildren(...pending, ...ids.map((id) => rows.get(id)).filter(Boolean))
  $('more').hidden = !olderCursor
  $('empty').hidden = pending.length + ids.length > 0
}

// ---- the listing -------------------------------------------------------------------------------------

async function fetchPage(cursor) {
  const query = new URLSearchParams({ limit: '50' })
  if (cursor) query.set('cursor', cursor)
  const answer = await fetch(`/uploads?${query}`, { headers: authHeaders(), cache: 'no-store' })
  if (!answer.ok) {
    const reason = (await answer.text()).trim()
    const error = new Error(reason || `HTTP ${answer.status}`)
    error.status = answer.status
    throw error
  }
  return answer.json()
}

function remember(items) {
  for (const item of items) {
    let row = rows.get(item.id)
    if (!row) {
      row = makeRow(item.relativePath || item.filename || item.id)
      rows.set(item.id, row)
    }
    fillRow(row, item)
  }
  return items.map((item) => item.id)
}

async function refresh() {
  if (!config.listing || (config.tokens && !token)) return
  try {
    const page = await fetchPage(null)
    firstPage = remember(page.uploads)
    if (!olderPages.length) olderCursor = page.next
    render()
  } catch (error) {
    if (error.status === 401) refuseToken()
    else setStatus(`Uploads cannot be listed: ${error.message}`, 'error')
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer)
  refreshTimer = setTimeout(refresh, 250)
}

async function showOlder() {
  try {
    const page = await fetchPage(olderCursor)
    olderPages = [...olderPages, ...remember(page.uploads)]
    olderCursor = page.next
    render()
  } catch (error) {
    setStatus(`Older uploads cannot be listed: ${error.message}`, 'error')
  }
}

// ---- live events -------------------------------------------------------------------------------------

function listen() {
  events?.close()
  clearInterval(poller)
  if (!config.listing || (config.tokens && !token)) return
  // EventSource cannot send headers: the token goes in the query, as the server accepts for /events
  events = new EventSource(token ? `/events?access_token=${encodeURIComponent(token)}` : '/events')
  events.onmessage = (message) => {
    const event = JSON.parse(message.data)
    const row = rows.get(event.id)
    if (event.type === 'progress' && row && !row.dataset.local) showProgress(row, event.offset, event.length)
    else if (event.type !== 'progress') scheduleRefresh()
  }
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) {
      // the server does not stream events to us (off, or refused): look again every few seconds instead
      poller = setInterval(refresh, 5000)
    }
  }
}

// ---- uploading ---------------------------------------------------------------------------------------

function describe(error) {
  const response = error.originalResponse
  if (!response) return error.message
  const text = (response.getBody() || '').trim()
  return `${response.getStatus()} ${text}`.trim()
}

function upload(file, relativePath) {
  const row = makeRow(relativePath || file.name)
  row.dataset.local = 'true'
  row.dataset.state = 'uploading'
  showProgress(row, 0, file.size)
  pending = [row, ...pending]
  render()
  const metadata = { filename: file.name, filetype: file.type || 'application/octet-stream' }
  if (relativePath) metadata.relativePath = relativePath
  const tus = new Upload(file, {
    endpoint: config.endpoint,
    headers: authHeaders(),
    metadata,
    chunkSize: config.chunkSize,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    onUploadUrlAvailable() {
      const id = tus.url.split('/').pop()
      row.dataset.id = id
      row.dataset.url = tus.url
      rows.set(id, row)
      pending = pending.filter((r) => r !== row)
      firstPage = [id, ...firstPage.filter((other) => other !== id)]
      render()
    },
    onProgress(sent, total) {
      showProgress(row, sent, total)
    },
    onSuccess() {
      delete row.dataset.local
      if (row.dataset.state === 'uploading') showState(row, 'processing', humanBytes(file.size))
      scheduleRefresh()
    },
    onError(error) {
      delete row.dataset.local
      showState(row, 'failed', describe(error))
      if (error.originalResponse?.getStatus() === 401) refuseToken()
    },
  })
  // a file picked again after a reload or a lost connection continues where the server's copy ends
  tus.findPreviousUploads().then((previous) => {
    if (previous.length) {
      row.dataset.resumed = 'true'
      tus.resumeFromPreviousUpload(previous[0])
    }
    tus.start()
  })
}

async function entries(entry, path) {
  // a dropped folder: read it recursively (readEntries answers in batches until it answers nothing)
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject))
    return [[file, path + file.name]]
  }
  const reader = entry.createReader()
  const found = []
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject))
    if (!batch.length) return found
    for (const child of batch) found.push(...(await entries(child, `${path}${entry.name}/`)))
  }
}

async function dropped(event) {
  event.preventDefault()
  $('drop').classList.remove('over')
  const items = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean)
  if (!items.length) {
    for (const file of event.dataTransfer.files) upload(file, null)
    return
  }
  for (const entry of items) {
    for (const [file, path] of await entries(entry, '')) upload(file, entry.isFile ? null : path)
  }
}

// ---- the token ---------------------------------------------------------------------------------------

function refuseToken() {
  token = ''
  sessionStorage.removeItem(TOKEN_KEY)
  $('token-form').dataset.state = 'refused'
  setStatus('The server refused this token.', 'error')
  events?.close()
}

async function useToken(event) {
  event.preventDefault()
  token = $('token').value.trim()
  $('token').value = ''
  try {
    await fetchPage(null)
  } catch (error) {
    if (error.status === 401) return refuseToken()
  }
  sessionStorage.setItem(TOKEN_KEY, token)
  $('token-form').dataset.state = 'accepted'
  setStatus('Token accepted.')
  refresh()
  listen()
}

// ---- start -------------------------------------------------------------------------------------------

function start() {
  $('token-form').hidden = !config.tokens
  $('token-form').addEventListener('submit', useToken)
  if (token) $('token-form').dataset.state = 'accepted'
  for (const id of ['files', 'folder']) {
    $(id).addEventListener('change', (event) => {
      for (const file of event.target.files) upload(file, file.webkitRelativePath || null)
      event.target.value = ''
    })
  }
  const drop = $('drop')
  drop.addEventListener('dragover', (event) => {
    event.preventDefault()
    drop.classList.add('over')
  })
  drop.addEventListener('dragleave', () => drop.classList.remove('over'))
  drop.addEventListener('drop', dropped)
  $('more').addEventListener('click', showOlder)
  if (!config.listing) setStatus('This server does not list uploads; the ones you send from here are shown.')
  else if (config.tokens && !token) setStatus('Enter your token to upload and to see your uploads.')
  render()
  refresh()
  listen()
}

start()
