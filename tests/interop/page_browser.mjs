// Drive tuskit's own upload page (served by the server at /) in Debian's headless Chromium.
//
// Usage: node page_browser.mjs '{"scenario": ..., "page": URL, "chromium": path, "userDataDir": dir, ...}'.
// Prints JSON lines: events the test waits for, then a last line with what it saw (or {"error": ...}).
// The test (test_page_browser.py) owns the server and checks what arrived; this only plays the user.
import { createInterface } from 'node:readline'
import { openPage } from './chromium.mjs'

const job = JSON.parse(process.argv[2])
const TIMEOUT = { timeout: job.timeoutMs ?? 60_000 }

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function heard() {
  const { value } = await lines.next()
  return value
}

// what every row of the list says, as the page's data attributes and text show it
function rows(page) {
  return page.$$eval('#uploads > li', (items) =>
    items.map((li) => ({
      ...li.dataset,
      name: li.querySelector('.name').textContent,
      meta: li.querySelector('.meta').textContent,
      thumbnail: li.querySelector('.thumb img')?.naturalWidth ?? 0,
    })),
  )
}

async function signIn(page, token, outcome) {
  await page.fill('#token', token)
  await page.click('#token-form button')
  await page.waitForSelector(`#token-form[data-state="${outcome}"]`, TIMEOUT)
}

function settled(page, count) {
  // every row finished (processed or failed) and every image row showing its thumbnail
  return page.waitForFunction(
    (n) => {
      const items = [...document.querySelectorAll('#uploads > li')]
      return items.length === n && items.every((li) => ['processed', 'failed'].includes(li.dataset.state) &&
        (!li.dataset.image || li.querySelector('.thumb img')?.naturalWidth > 0))
    },
    count,
    TIMEOUT,
  )
}

const scenarios = {
  // pick files (and a folder) and wait until each is uploaded and processed
  async upload(page) {
    if (job.token) await signIn(page, job.token, 'accepted')
    await page.setInputFiles('#files', job.files)
    if (job.folder) await page.setInputFiles('#folder', job.folder)
    await page.waitForFunction((n) => document.querySelectorAll('#uploads > li[data-id]').length === n,
      job.expect, TIMEOUT)
    await page.$$eval('#uploads > li', (items) => {
      for (const li of items) if (/\.(jpe?g|png)$/i.test(li.querySelector('.name').textContent)) li.dataset.image = '1'
    })
    await settled(page, job.expect)
    return { rows: await rows(page) }
  },

  // start a slow upload; when the test says so (the server has recorded part of it), reload the page and
  // pick the file again: the upload continues where the server's copy ends, it does not start over
  async resume(page) {
    if (job.token) await signIn(page, job.token, 'accepted')
    await page.setInputFiles('#files', [job.file])
    await page.waitForSelector('#uploads > li[data-id]', TIMEOUT)
    const before = (await rows(page))[0]
    say({ started: before.id })
    await heard()
    await page.reload()
    // after the reload the listing shows the interrupted upload; the token was kept for this tab
    await page.waitForSelector(`#uploads > li[data-id="${before.id}"][data-state="uploading"]`, TIMEOUT)
    const listed = (await rows(page))[0]
    await page.setInputFiles('#files', [job.file])
    await page.waitForSelector(`#uploads > li[data-id="${before.id}"][data-state="processed"]`, TIMEOUT)
    return { before, listed, after: await rows(page) }
  },

  // a wrong token is refused, and an upload tried with it fails with the server's reason
  async refusedToken(page) {
    await signIn(page, job.token, 'refused')
    const status = await page.textContent('#status')
    await page.setInputFiles('#files', job.files)
    await page.waitForSelector('#uploads > li[data-state="failed"]', TIMEOUT)
    return { status, rows: await rows(page) }
  },

  // the test uploads with another client; the page follows along through /events
  async watch(page) {
    if (job.token) await signIn(page, job.token, 'accepted')
    say({ ready: true })
    const id = await heard()
    await page.waitForSelector(`#uploads > li[data-id="${id}"]`, TIMEOUT)
    say({ row: (await rows(page)).find((r) => r.id === id) })
    const half = await heard()
    await page.waitForSelector(`#uploads > li[data-id="${id}"][data-offset="${half}"]`, TIMEOUT)
    say({ progress: (await rows(page)).find((r) => r.id === id) })
    await heard()
    await page.waitForFunction(
      (i) => document.querySelector(`#uploads > li[data-id="${i}"] .thumb img`)?.naturalWidth > 0, id, TIMEOUT)
    return { row: (await rows(page)).find((r) => r.id === id) }
  },
}

const { context, page, consoleLines } = await openPage(job)
try {
  await page.goto(job.page)
  const result = await scenarios[job.scenario](page)
  say({ result, status: await page.textContent('#status'), console: consoleLines })
} catch (err) {
  say({ error: String(err?.message ?? err), console: consoleLines })
  process.exitCode = 1
} finally {
  await context.close()
  process.exit()
}
