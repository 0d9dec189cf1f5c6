/// <reference lib="dom" />
import { test, type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { mkdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser, type Page } from 'playwright-core'
import { testCertificate, type Certificate } from './helpers/server'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { waitUntil, within } from './helpers/wait'

const skip = mustSkip(missingService('chromium'))

const SCREENSHOT = resolve(__dirname, '../examples/screenshots/demo.png')
const TICKERS = 12
// Generous: the machine has two cores, and the other test files run at the same time.
const WAIT_MS = 30_000

interface DemoServer {
  app: FastifyInstance
  url: string
}

interface Demo {
  http2: DemoServer
  http1: DemoServer
  close: () => Promise<void>
}

interface DemoOptions {
  port: number
  http1Port: number
  host: string
  certificate: Certificate
}

// The demo is plain JavaScript for newcomers to read, and loads the plugin as users do: from the build (dist/).
const { startDemo } = createRequire(__filename)('../examples/demo/demo.js') as {
  startDemo: (options: DemoOptions) => Promise<Demo>
}

interface Teardown {
  teardown: (fn: () => unknown) => void
}

async function start (t: Teardown): Promise<Demo> {
  const demo = await startDemo({ port: 0, http1Port: 0, host: '127.0.0.1', certificate: await testCertificate() })
  t.teardown(() => within(demo.close(), 'the demo servers to close', WAIT_MS))
  return demo
}

interface SeenRequest {
  path: string
  httpVersion: string
  lastEventId: string | undefined
  /** The HTTP/2 session, or the HTTP/1.1 socket, the request came on. */
  connection: object
}

/** Every request a demo server receives, seen from the server itself. */
class RequestLog extends EventEmitter {
  readonly seen: SeenRequest[] = []

  constructor (app: FastifyInstance) {
    super()
    app.server.on('request', (request: IncomingMessage | Http2ServerRequest) => {
      const header = request.headers['last-event-id']
      this.seen.push({
        path: request.url ?? '',
        httpVersion: request.httpVersion,
        lastEventId: Array.isArray(header) ? header[0] : header,
        connection: 'stream' in request ? request.stream.session as object : request.socket
      })
      this.emit('request')
    })
  }

  tickers (): SeenRequest[] {
    return this.seen.filter((request) => request.path.startsWith('/ticker/'))
  }

  async waitFor<T> (check: (log: this) => T | undefined, what: string): Promise<T> {
    return await waitUntil(this, 'request', () => check(this), what, WAIT_MS)
  }
}

interface OpenPage {
  page: Page
  /** Uncaught errors of the page's script. */
  errors: string[]
}

async function openPage (t: Teardown, browser: Browser, url: string,
  viewport = { width: 1280, height: 800 }): Promise<OpenPage> {
  // A context of its own: a fresh profile, with its own connections, as a second person would have.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport })
  t.teardown(() => within(context.close(), 'the browser context to close', WAIT_MS))
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(error.message))
  await page.goto(url)
  return { page, errors }
}

/** A ticker card as the page shows it. */
interface Card {
  symbol: string
  state: string
  price: string
  lastId: number
  firstId: number
  events: number
  reconnects: number
  gaps: number
  dups: number
}

// Runs in the page: reads the board from what is on the screen (NaN where a card shows no id yet).
function readCards (): Card[] {
  return [...document.querySelectorAll<HTMLElement>('.ticker')].map((card) => {
    const text = (name: string): string => card.querySelector(`.${name}`)?.textContent ?? ''
    return {
      symbol: card.dataset.symbol ?? '',
      state: text('state'),
      price: text('price'),
      lastId: Number(text('last-id')),
      firstId: Number(text('first-id')),
      events: Number(text('events')),
      reconnects: Number(text('reconnects')),
      gaps: Number(text('gaps')),
      dups: Number(text('dups'))
    }
  })
}

/**
 * Waits until `check` holds for the board the page shows, polled by the browser; `check` runs in the page and
 * is given `arg` as JSON. Resolves to the board at that moment; on timeout, says what it waited for and shows
 * the board.
 */
async function waitForBoard<A> (page: Page, check: (cards: Card[], arg: A) => boolean, arg: A,
  what: string): Promise<Card[]> {
  try {
    await page.waitForFunction(`(${check.toString()})((${readCards.toString()})(), ${JSON.stringify(arg)})`,
      undefined, { timeout: WAIT_MS })
  } catch (error) {
    const cards = await page.evaluate(readCards).catch(() => [])
    throw new Error(`${(error as Error).message}: waiting for ${what}; the board: ${JSON.stringify(cards)}`)
  }
  return await page.evaluate(readCards)
}

/** Waits until every ticker card shows its stream open, with at least `events` ids after `after` (or its first). */
async function waitForLiveBoard (page: Page, events: number, after: Record<string, number> = {}): Promise<Card[]> {
  return await waitForBoard(page, (cards, { count, events, after }) => cards.length === count &&
    cards.every((card) => card.state === 'open' && card.lastId - (after[card.symbol] ?? card.firstId - 1) >= events),
  { count: TICKERS, events, after }, `every ticker open, with ${events} more events`)
}

/** What a person checks on each card: no gap, no duplicate, and as many events as ids from first to last. */
function checkInOrder (t: Test, cards: Card[]): void {
  for (const card of cards) {
    t.same({ gaps: card.gaps, dups: card.dups }, { gaps: 0, dups: 0 }, `${card.symbol}: no gap, no duplicate`)
    t.equal(card.events, card.lastId - card.firstId + 1, `${card.symbol}: ids ${card.firstId} to ${card.lastId}, each once`)
  }
}

test('the demo page in a real browser', { skip }, async (t) => {
  const browser = await chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: WAIT_MS
  })
  t.teardown(() => within(browser.close(), 'the browser to close', WAIT_MS))

  await t.test('over HTTP/2 every stream of the page is open at once, on one connection, in order', async (t) => {
    const demo = await start(t)
    const requests = new RequestLog(demo.http2.app)
    const { page, errors } = await openPage(t, browser, demo.http2.url)

    t.equal(await page.textContent('#protocol'), 'HTTP/2', 'the page says it came over HTTP/2')
    const cards = await waitForLiveBoard(page, 3)
    t.equal(cards.length, TICKERS)
    t.ok(cards.every((card) => card.state === 'open'), `all ${TICKERS} streams open at the same time`)
    checkInOrder(t, cards)
    t.match(await page.textContent('#summary'), `${TICKERS} of ${TICKERS} ticker streams open`)
    t.ok(await page.isHidden('#banner'), 'no HTTP/1.1 warning')

    const tickers = requests.tickers()
    t.same(new Set(tickers.map((request) => request.path)).size, TICKERS, 'the server got one request per ticker')
    t.ok(tickers.every((request) => request.httpVersion === '2.0'), 'all of them over HTTP/2')
    t.equal(new Set(tickers.map((request) => request.connection)).size, 1, 'all of them on one connection')
    t.same(errors, [], 'no script error')
  })

  await t.test('over HTTP/1.1 the browser holds only 6 streams open, and the page says so', async (t) => {
    const demo = await start(t)
    const requests = new RequestLog(demo.http1.app)
    const { page, errors } = await openPage(t, browser, demo.http1.url)

    t.equal(await page.textContent('#protocol'), 'HTTP/1.1', 'the page says it came over HTTP/1.1')
    // The page opens the chat stream first: it holds one of the six connections.
    await page.waitForFunction(() => document.getElementById('chat-state')?.textContent === 'open')
    // Long enough for every stream that could open to have opened: each open one has had 3 events.
    const cards = await waitForBoard(page, (cards) => {
      const open = cards.filter((card) => card.state === 'open')
      return open.length > 0 && open.every((card) => card.events >= 3)
    }, null, 'the open streams to have 3 events each')
    const open = cards.filter((card) => card.state === 'open')
    const waiting = cards.filter((card) => card.state !== 'open')

    t.ok(open.length + 1 <= 6, `at most 6 streams open with the chat stream (${open.length} tickers)`)
    t.equal(open.length + waiting.length, TICKERS)
    t.ok(waiting.every((card) => card.state === 'connecting' && card.events === 0),
      `the other ${waiting.length} are not open and have received nothing`)
    checkInOrder(t, open)

    const banner = await page.textContent('#banner') ?? ''
    t.ok(await page.isVisible('#banner'), 'a banner explains')
    t.match(banner, 'HTTP/1.1: the browser holds at most 6 connections to this origin')
    t.match(banner, `${open.length} of ${TICKERS} ticker streams are open`)
    t.match(banner, `the other ${waiting.length} wait`)
    t.ok(await page.isDisabled('#drop'), 'the drop button is off: its request could not be sent')
    t.ok(await page.isDisabled('#chat-form button'), 'so is publishing')

    const tickers = requests.tickers()
    t.equal(tickers.length, open.length, 'the waiting streams never reached the server')
    const streams = requests.seen.filter((request) => request.path === '/chat' || request.path.startsWith('/ticker/'))
    t.ok(new Set(streams.map((request) => request.connection)).size <= 6, 'on at most 6 connections')
    t.ok(streams.every((request) => request.httpVersion === '1.1'), 'all over HTTP/1.1')
    t.same(errors, [], 'no script error')
  })

  await t.test('streams dropped by the server reconnect by themselves and resume by Last-Event-ID', async (t) => {
    const demo = await start(t)
    const requests = new RequestLog(demo.http2.app)
    const { page, errors } = await openPage(t, browser, demo.http2.url)
    const before = await waitForLiveBoard(page, 2)

    await page.click('#drop')
    const resumed = await requests.waitFor((log) => {
      const reconnects = log.tickers().filter((request) => request.lastEventId !== undefined)
      return new Set(reconnects.map((request) => request.path)).size === TICKERS ? reconnects : undefined
    }, 'every ticker to reconnect with Last-Event-ID')

    const resumedFrom: Record<string, number> = {}
    for (const request of resumed) {
      const symbol = request.path.slice('/ticker/'.length)
      const seen = before.find((card) => card.symbol === symbol) as Card
      resumedFrom[symbol] = Number(request.lastEventId)
      t.ok(Number(request.lastEventId) >= seen.lastId,
        `${symbol} reconnected with Last-Event-ID ${String(request.lastEventId)}, at least the ${seen.lastId} the page showed`)
    }

    // Two more events after the one it reconnected with: at least one missed while away, and a live one.
    const after = await waitForLiveBoard(page, 2, resumedFrom)
    checkInOrder(t, after)
    for (const card of after) {
      const seen = before.find((old) => old.symbol === card.symbol) as Card
      t.equal(card.reconnects, 1, `${card.symbol} reconnected once`)
      t.equal(card.firstId, seen.firstId, `${card.symbol}: the same run of ids, continued`)
    }
    t.equal(requests.tickers().length, 2 * TICKERS, 'one reconnect per stream')
    const status = `The server dropped ${TICKERS} streams; all ${TICKERS} reconnected and resumed`
    await page.waitForFunction((text) => document.getElementById('drop-status')?.textContent?.startsWith(text), status)
    t.pass(`the page says: ${status}`)
    t.same(errors, [], 'no script error')
  })

  await t.test('a message published from the form reaches every open page, on both servers', async (t) => {
    const demo = await start(t)
    const pages = [
      await openPage(t, browser, demo.http2.url),
      await openPage(t, browser, demo.http2.url),
      await openPage(t, browser, demo.http1.url)
    ]
    for (const { page } of pages) await page.waitForFunction(() => document.getElementById('chat-state')?.textContent === 'open')

    const message = 'Hello <b>everyone</b>, from page 1'
    const [{ page: sender }] = pages
    await sender.fill('#chat-form input', message)
    await sender.click('#chat-form button')

    for (const [index, { page }] of pages.entries()) {
      await page.waitForFunction((text) => [...document.querySelectorAll('#messages li span')]
        .some((item) => item.textContent === text), message)
      t.pass(`page ${index + 1} (${index === 2 ? 'HTTP/1.1' : 'HTTP/2'}) shows the message, as text`)
    }
    t.equal(await sender.inputValue('#chat-form input'), '', 'the form is cleared once sent')
    for (const { errors } of pages) t.same(errors, [], 'no script error')
  })

  await t.test('the page of one stream, over HTTP/1.1: every ticker and the chat live on one EventSource', async (t) => {
    const demo = await start(t)
    const requests = new RequestLog(demo.http1.app)
    const { page, errors } = await openPage(t, browser, `${demo.http1.url}one`)

    t.equal(await page.textContent('#protocol'), 'HTTP/1.1', 'the page says it came over HTTP/1.1')
    const cards = await waitForLiveBoard(page, 3)
    t.ok(cards.every((card) => card.state === 'open'), `all ${TICKERS} tickers live at the same time`)
    checkInOrder(t, cards)
    t.equal(await page.textContent('#chat-state'), 'open', 'the chat too')
    t.match(await page.textContent('#summary'), `${TICKERS} of ${TICKERS} tickers and the chat live, on one stream`)
    t.match(await page.textContent('#banner'), 'HTTP/1.1, and every ticker is live')
    t.ok(await page.isEnabled('#drop'), 'dropping works: the stream holds one connection of six')
    t.ok(await page.isEnabled('#chat-form button'), 'so does publishing')

    const feeds = requests.seen.filter((request) => request.path === '/feed')
    t.equal(feeds.length, 1, 'one stream')
    t.equal(requests.tickers().length + requests.seen.filter((request) => request.path === '/chat').length, 0,
      'no stream per ticker, none for the chat')
    t.equal(feeds[0].httpVersion, '1.1')

    const message = 'One stream carries the chat too'
    await page.fill('#chat-form input', message)
    await page.click('#chat-form button')
    await page.waitForFunction((text) => [...document.querySelectorAll('#messages li span')]
      .some((item) => item.textContent === text), message)
    t.pass('a message published from the form arrives on the one stream')

    const before = await page.evaluate(readCards)
    await page.click('#drop')
    const [resumed] = await requests.waitFor((log) => {
      const reconnects = log.seen.filter((request) => request.path === '/feed' && request.lastEventId !== undefined)
      return reconnects.length > 0 ? reconnects : undefined
    }, 'the stream to reconnect with Last-Event-ID')
    t.match(resumed.lastEventId, /^~[0-9a-z._-]+$/, `it reconnected with a cursor (${String(resumed.lastEventId?.length)} characters)`)
    t.ok((resumed.lastEventId ?? '').length < 256, 'a short one, for thirteen channels')
    // Two more events of each ticker than the page had: the ones it missed while away came first, and in order.
    const after = await waitForLiveBoard(page, 2, Object.fromEntries(before.map((card) => [card.symbol, card.lastId])))
    checkInOrder(t, after)
    for (const card of after) {
      const seen = before.find((old) => old.symbol === card.symbol) as Card
      t.equal(card.reconnects, 1, `${card.symbol} reconnected once`)
      t.equal(card.firstId, seen.firstId, `${card.symbol}: the same run of numbers, continued`)
    }
    t.equal(requests.seen.filter((request) => request.path === '/feed').length, 2, 'one reconnect, for every channel')
    await page.waitForFunction(() => document.getElementById('drop-status')?.textContent?.includes('resumed all'))
    t.same(errors, [], 'no script error')
  })

  await t.test('from the page that stalls over HTTP/1.1, its banner leads to the page of one stream, where all is live', async (t) => {
    const demo = await start(t)
    const { page, errors } = await openPage(t, browser, demo.http1.url)
    await page.waitForSelector('#banner', { state: 'visible' })
    const stalled = await page.evaluate(readCards)
    t.ok(stalled.some((card) => card.state !== 'open'), 'some tickers wait for a connection')
    await page.click('#banner a:has-text("the page of one stream")')
    await page.waitForURL(`${demo.http1.url}one`)
    const cards = await waitForLiveBoard(page, 3)
    t.ok(cards.every((card) => card.state === 'open'), `there all ${TICKERS} are live`)
    checkInOrder(t, cards)
    t.same(errors, [], 'no script error')
  })

  await t.test('a screenshot of the live page', async (t) => {
    const demo = await start(t)
    const { page } = await openPage(t, browser, demo.http2.url)
    await page.waitForFunction(() => document.getElementById('chat-state')?.textContent === 'open')
    await page.fill('#chat-form input', 'Every ticker is its own EventSource: twelve streams, one HTTP/2 connection.')
    await page.press('#chat-form input', 'Enter')
    await page.waitForSelector('#messages li')
    await waitForLiveBoard(page, 3)
    // After a drop, so that the picture shows streams that reconnected and resumed.
    await page.click('#drop')
    await page.waitForFunction(() => document.getElementById('drop-status')?.textContent?.includes('reconnected and resumed'))
    await waitForLiveBoard(page, 2)

    await mkdir(dirname(SCREENSHOT), { recursive: true })
    await page.screenshot({ path: SCREENSHOT })
    const png = await readFile(SCREENSHOT)
    t.equal(png.subarray(1, 4).toString(), 'PNG', `written to ${SCREENSHOT}`)
    t.same([png.readUInt32BE(16), png.readUInt32BE(20)], [1280, 800], '1280x800')
  })

  await t.test('the page reads well on a phone (390 px) and on a wide screen (1440 px), over both protocols', async (t) => {
    const demo = await start(t)
    for (const [protocol, url] of [['http2', demo.http2.url], ['http1', demo.http1.url]]) {
      for (const viewport of [{ width: 390, height: 844 }, { width: 1440, height: 900 }]) {
        const where = `${protocol}, ${viewport.width} px`
        const { page, errors } = await openPage(t, browser, url, viewport)
        await page.waitForFunction(() => document.getElementById('chat-state')?.textContent === 'open')
        if (protocol === 'http2') {
          await page.fill('#chat-form input', 'A phone holds twelve streams too: one HTTP/2 connection.')
          await page.press('#chat-form input', 'Enter')
          await page.waitForSelector('#messages li')
          await waitForLiveBoard(page, 3)
        } else {
          // The banner, and the streams the browser could open with their first events.
          await waitForBoard(page, (cards) => cards.some((card) => card.state === 'open') &&
            cards.every((card) => card.state !== 'open' || card.events >= 3), null, 'the open streams to have 3 events each')
          await page.waitForSelector('#banner', { state: 'visible' })
        }
        // What a person would see as broken: a page wider than the screen, or a box whose text spills out of it.
        const layout = await page.evaluate(() => ({
          pageWidth: document.documentElement.scrollWidth,
          spilling: [...document.querySelectorAll<HTMLElement>('header, #banner, .ticker, .ticker *, aside, aside *, .howto-section')]
            .filter((element) => element.scrollWidth > element.clientWidth + 1)
            .map((element) => `${element.tagName.toLowerCase()}.${element.className}: ${element.textContent ?? ''}`),
          outside: [...document.querySelectorAll<HTMLElement>('#drop, #chat-form button, #chat-form input, .ticker')]
            .filter((element) => element.getBoundingClientRect().right > window.innerWidth)
            .map((element) => element.id || element.className)
        }))
        t.equal(layout.pageWidth, viewport.width, `${where}: no sideways scrolling`)
        t.same(layout.spilling, [], `${where}: no text spills out of its box`)
        t.same(layout.outside, [], `${where}: every card, button and field is on the screen`)
        const file = resolve(__dirname, `../examples/screenshots/demo-${protocol}-${viewport.width}.png`)
        await mkdir(dirname(file), { recursive: true })
        await page.screenshot({ path: file, fullPage: true })
        const png = await readFile(file)
        t.equal(png.readUInt32BE(16), viewport.width, `written to ${file}, ${viewport.width} px wide`)
        t.same(errors, [], 'no script error')
      }
    }
  })
})
