import { test, type Test } from 'tap'
import { EventEmitter } from 'node:events'
import fc from 'fast-check'
import { EventSource } from 'eventsource'
import { chromium } from 'playwright-core'
import { startServer, type TestServer } from './helpers/server'
import { waitUntil, within } from './helpers/wait'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { frameEvent } from '../lib/protocol/framing'

// Whatever the plugin accepts as an event id must come back from the client exactly as it was sent: in the
// Last-Event-ID header of a reconnect (the `eventsource` package on Node's fetch, and Chromium's EventSource) and in
// the query fallback of a page that reloads (a URL). What cannot come back is refused with FST_SSE_INVALID_ID
// (test/framing.test.ts). Ids are drawn from the whole of UTF-16, lone surrogates included: the `eventsource` package
// sends a header as Latin-1 (fetch) and fails for good on a character past it, where Chromium sends UTF-8, so only
// ASCII ids are accepted.

const chromiumMissing = mustSkip(missingService('chromium'))
const SEED = Number(process.env.FC_SEED ?? 20261207)

const tricky = ['é', 'naïve café', '日本語', '🚀', 'a\tb', '~', '~x', '~10.zz', '%41', 'a+b', 'a&b=c', '#hash', '?q',
  '"quoted"', "'", '\\', 'x'.repeat(256), '\u00a0nbsp', 'nbsp\u00a0', '\ufeffbom', 'ñ'.repeat(100), '1e21', '-0', '0']
const anyId = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(' ', '\t', '~', '0', 'a', '.', 'é', '\ud800', '\udc00', '🚀'), maxLength: 12 })
)

/** The ids of a sample the plugin accepts (`''` resets the client's last id instead: it is sent, and never sent back). */
function acceptedIds (count: number): string[] {
  const ids = [...tricky, ...fc.sample(anyId, { numRuns: count, seed: SEED })]
  return [...new Set(ids)].filter((id) => {
    try {
      frameEvent({ id, data: 'x' }, JSON.stringify)
      return id !== ''
    } catch {
      return false
    }
  })
}

/**
 * A route whose n-th connection records the id it resumes from, then sends `ids[n]` and ends: the client reconnects
 * at once with it.
 */
async function echoServer (t: Test, ids: string[]): Promise<{ server: TestServer, seen: Array<string | undefined>, arrived: EventEmitter }> {
  const seen: Array<string | undefined> = []
  const arrived = new EventEmitter()
  const server = await startServer(t, 'http1', (app) => {
    app.get('/', (request, reply) => { reply.type('text/html').send('<!doctype html><title>ids</title>') })
    app.get('/echo', (request, reply) => {
      const stream = reply.sse()
      seen.push(stream.lastEventId)
      arrived.emit('change')
      const next = ids[seen.length - 1]
      if (next !== undefined) stream.send({ id: next, data: 'x' })
      stream.close()
    })
  }, { plugin: { retry: 0, heartbeatInterval: 0 } })
  return { server, seen, arrived }
}

test('the eventsource package sends back every accepted id exactly, in Last-Event-ID', async (t) => {
  const ids = acceptedIds(300)
  const { server, seen, arrived } = await echoServer(t, ids)
  const source = new EventSource(`${server.origin}/echo`)
  t.teardown(() => source.close())
  await waitUntil(arrived, 'change', () => (seen.length > ids.length ? true : undefined), `${ids.length + 1} connections`, 60_000)
  source.close()
  const wrong = ids.filter((id, i) => seen[i + 1] !== id)
  t.same(wrong.map((id) => JSON.stringify(id)), [], `${ids.length} ids, each back as it was sent`)
})

test('every accepted id comes back exactly in the query fallback (a URL, as a page that reloads sends it)', async (t) => {
  const ids = acceptedIds(300)
  const { server, seen } = await echoServer(t, [])
  for (const id of ids) {
    const response = await fetch(`${server.origin}/echo?lastEventId=${encodeURIComponent(id)}`, { headers: { accept: 'text/event-stream' } })
    await response.text()
  }
  const wrong = ids.filter((id, i) => seen[i] !== id)
  t.same(wrong.map((id) => JSON.stringify(id)), [], `${ids.length} ids, each back as it was sent`)
})

test('Chromium\'s EventSource sends back every accepted id exactly, in Last-Event-ID', { skip: chromiumMissing }, async (t) => {
  const ids = acceptedIds(120)
  const { server, seen, arrived } = await echoServer(t, ids)
  const browser = await chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => await within(browser.close(), 'the browser to close'))
  const page = await browser.newPage()
  await page.goto(`${server.origin}/`)
  // As text: the test's own EventSource (the package's) is not the page's.
  await page.evaluate('globalThis.source = new EventSource("/echo")')
  await waitUntil(arrived, 'change', () => (seen.length > ids.length ? true : undefined), `${ids.length + 1} connections`, 60_000)
  await page.evaluate('globalThis.source.close()')
  const wrong = ids.filter((id, i) => seen[i + 1] !== id)
  t.same(wrong.map((id) => JSON.stringify(id)), [], `${ids.length} ids, each back as it was sent`)
})
