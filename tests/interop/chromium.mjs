// Debian's Chromium, headless, through playwright-core (never a downloaded browser), for the browser tests.
import { chromium } from 'playwright-core'

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
]

// A browser with its profile in job.userDataDir and one page whose console lines (and uncaught errors) are
// collected in `consoleLines`, for the test to look at.
export async function openPage(job) {
  const context = await chromium.launchPersistentContext(job.userDataDir, {
    executablePath: job.chromium,
    headless: true,
    args: FLAGS,
  })
  const consoleLines = []
  const page = context.pages()[0] ?? (await context.newPage())
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`))
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`))
  return { context, page, consoleLines }
}
