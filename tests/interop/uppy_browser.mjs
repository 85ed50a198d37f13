// Drive the Uppy test page in Debian's headless Chromium through playwright-core (never a downloaded browser).
//
// Usage: node uppy_browser.mjs '{"page": URL, "files": [paths], "chromium": path, "userDataDir": dir}'.
// Prints {"result": window.uppyResult, "console": [...]} once Uppy has finished (successfully or not).
import { openPage } from './chromium.mjs'

const job = JSON.parse(process.argv[2])
const { context, page, consoleLines } = await openPage(job)
try {
  await page.goto(job.page)
  await page.setInputFiles('#files', job.files)
  await page.waitForFunction(() => window.uppyResult !== undefined, null, { timeout: job.timeoutMs ?? 60_000 })
  const result = await page.evaluate(() => window.uppyResult)
  const status = await page.textContent('#status')
  process.stdout.write(`${JSON.stringify({ result, status, console: consoleLines })}\n`)
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err), console: consoleLines })}\n`)
  process.exitCode = 1
} finally {
  await context.close()
}
