/// <reference lib="dom" />
import { t as root, teardown, test, type Test } from 'tap'
import { spawn, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import http2 from 'node:http2'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { chromium, type Browser } from 'playwright-core'
import { testCertificate, type Protocol, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { startRedis } from './helpers/redis'
import { binaryPath, missingService, mustSkip } from './helpers/services'
import { within } from './helpers/wait'
import { errors } from '../index'

// Every block of the docs runs, each its own server: on a loaded 2-core machine, longer than tap's 120 s.
root.setTimeout(300_000)

// Every js and ts code block of README.md, of every docs/*.md page and of CONTRIBUTING.md, run as it is written
// (CONTRIBUTING.md says how to write one). How a block is run:
// - js, by default: server code for an `app`. It runs as an ES module in an app that depends on the package by
//   name, given `app` (HTTP/2 over TLS; the plugin registered unless the block registers it), `sse`, `Fastify`,
//   `require`, and the names the docs leave to the reader (test/helpers/readme-block.mjs, GIVEN). Then the app
//   listens, and every route the block added is asked once (GET: the stream opens; POST: a JSON body), or
//   its probe below runs instead. It must log no warning or error, and print nothing on stderr.
// - ts: compiled against the package's types, given `app` and `sse` as a js block is, and the package's and
//   Fastify's type names it uses; an interface the package exports too must have the same members (the
//   `SseStore` of docs/stores.md is the package's).
// An HTML comment on the line above a block's fence says otherwise, or more:
//   <!-- doctest: program -->       a whole program: run as is (as server.mjs, beside a key.pem and a cert.pem),
//                                   with PORT=0; it must log Fastify's "Server listening at" line
//   <!-- doctest: page -->          browser code: run in Chromium, in a page of the server of the closest
//   <!-- doctest: page on "Title" -->  server block above in its file (or of the first under that heading of its
//   <!-- doctest: page on "README.md#Title" -->  file, or of another file), as a module of the page: it may
//                                   import 'fastify-sse-h2/client' (the package's ES module, as a browser loads it
//                                   without a bundler: test/helpers/readme-block.mjs); every EventSource it opens must
//                                   open, every client it makes must open, and it must throw nothing
//   <!-- doctest: test -->          a test file of the reader's (node:test): run with `node --test`, it must pass
//   <!-- doctest: needs redis-server -->  runs with a real Redis (REDIS_URL); skipped without one, as suites are
//   <!-- doctest: skip, because … -->      not run, with the reason said (a block that cannot run alone)
// A probe (PROBES, by file and heading, `docs/api.md#Heading [2]` for the second block under it) checks what the
// prose around a block promises. Failures name the block by its file and line. README_BLOCKS narrows the run:
// `README_BLOCKS=docs/api.md` (a page), `README_BLOCKS=README.md:130,docs/api.md:120` (blocks by their line),
// `README_BLOCKS=130` (the block at that line of any page).

const repo = resolve(__dirname, '..')
/** The pages whose blocks run, by their path from the repository's root. */
const PAGES = ['README.md', ...readdirSync(join(repo, 'docs')).filter((name) => name.endsWith('.md')).sort()
  .map((name) => `docs/${name}`), 'CONTRIBUTING.md']
/** The pages whose links are checked: those, and the benchmarks' page. */
const LINKED_PAGES = [...PAGES, 'bench/README.md']
const chromiumMissing = mustSkip(missingService('chromium'))
const redisMissing = mustSkip(missingService('redis-server'))

type Kind = 'fragment' | 'program' | 'page' | 'test' | 'types' | 'skip'

interface Block {
  /** The page it is in, by its path from the repository's root: `docs/api.md`. */
  file: string
  /** The line of the opening fence: the block's first line is the next one. */
  line: number
  lang: string
  code: string
  heading: string
  /** `file#heading`, and ` [n]` for the n-th block under that heading (n > 1): the key of its probe. */
  name: string
  kind: Kind
  /** For a page: `file#heading`, the heading whose first server block serves it. */
  on: string | undefined
  needs: string[]
  skipReason: string | undefined
}

const RUNNABLE = new Set(['js', 'javascript', 'mjs', 'ts', 'typescript'])

/** Where a block is: `docs/api.md:120`, the line of its opening fence. */
function at (block: Pick<Block, 'file' | 'line'>): string {
  return `${block.file}:${block.line}`
}

/** How a block is named in a failure: `docs/api.md:120 (Events)`. */
function title (block: Block): string {
  return `${at(block)} (${block.name.slice(block.file.length + 1)})`
}

function readBlocks (file: string, markdown: string): Block[] {
  const lines = markdown.split('\n')
  const blocks: Block[] = []
  const perHeading = new Map<string, number>()
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const headingMatch = /^#{1,6}\s+(.*)$/.exec(lines[i])
    if (headingMatch !== null) heading = headingMatch[1].trim()
    const fence = /^```(\S*)\s*$/.exec(lines[i])
    if (fence === null) continue
    const end = lines.indexOf('```', i + 1)
    if (end === -1) throw new Error(`${file}:${i + 1}: a code block that never closes`)
    const lang = fence[1]
    if (RUNNABLE.has(lang)) {
      const count = (perHeading.get(heading) ?? 0) + 1
      perHeading.set(heading, count)
      let above = i - 1
      while (above >= 0 && lines[above].trim() === '') above--
      const marker = above >= 0 ? /^<!--\s*doctest:(.*?)-->\s*$/.exec(lines[above].trim()) : null
      blocks.push({
        file,
        line: i + 1,
        lang,
        code: lines.slice(i + 1, end).join('\n') + '\n',
        heading,
        name: `${file}#${heading}${count === 1 ? '' : ` [${count}]`}`,
        ...readMarker(marker?.[1] ?? '', lang, file, i + 1)
      })
    }
    i = end
  }
  return blocks
}

function readMarker (text: string, lang: string, file: string, line: number): Pick<Block, 'kind' | 'on' | 'needs' | 'skipReason'> {
  const words = text.trim()
  const skip = /^skip\b[,:]?\s*(.*)$/.exec(words)
  if (skip !== null) {
    if (skip[1].trim() === '') throw new Error(`${file}:${line}: <!-- doctest: skip --> needs a reason: "skip, because …"`)
    return { kind: 'skip', on: undefined, needs: [], skipReason: skip[1].trim() }
  }
  const rest = words.replace(/\bon "([^"]+)"/, '').replace(/\bneeds [\w-]+/g, '').replace(/\b(program|page|test)\b/, '').replace(/,/g, '')
  if (rest.trim() !== '') {
    throw new Error(`${file}:${line}: <!-- doctest:${text}--> is not understood: say program, page, page on "Heading", ` +
      'test, needs redis-server, or skip, because … (see test/readme.test.ts)')
  }
  const kind = /\bprogram\b/.test(words)
    ? 'program'
    : /\bpage\b/.test(words) ? 'page' : /\btest\b/.test(words) ? 'test' : lang.startsWith('t') ? 'types' : 'fragment'
  const on = /\bon "([^"]+)"/.exec(words)?.[1]
  return {
    kind,
    // "Heading" is one of the block's own page; "docs/api.md#Heading" one of another page.
    on: on === undefined ? undefined : PAGES.some((page) => on.startsWith(`${page}#`)) ? on : `${file}#${on}`,
    needs: [...words.matchAll(/\bneeds ([\w-]+)/g)].map((match) => match[1]),
    skipReason: undefined
  }
}

/** The name of the file a block is written to, in the app: `doctest-docs-api-md-120.mjs`. */
function blockFile (block: Block, extension: string): string {
  return `doctest-${block.file.replace(/\W+/g, '-')}-${block.line}${extension}`
}

/** Where a block's lines are in its page: doctest-docs-api-md-120.mjs:12 is docs/api.md:(120 + 12). */
function inPage (block: Block, text: string): string {
  return text.replace(/(?:file:\/\/)?[^\s()'"]*doctest-[\w-]+?-\d+(?:\.test)?\.(?:mjs|ts):(\d+)(?::\d+)?/g,
    (match, line: string) => `${block.file}:${block.line + Number(line)}`)
}

// The package as an app installs it: a fresh build, in a folder of its own, that an app depends on by name.
interface Layout {
  root: string
  app: string
  certificate: { key: string, cert: string }
}

let layoutPromise: Promise<Layout> | undefined

async function layout (): Promise<Layout> {
  layoutPromise ??= (async () => {
    const root = await mkdtemp(join(tmpdir(), 'fastify-sse-h2-docs-'))
    const pkg = join(root, 'fastify-sse-h2')
    const app = join(root, 'app')
    await mkdir(pkg)
    await mkdir(join(app, 'node_modules'), { recursive: true })
    // The same files `npm run build` writes (it type-checks them; here that would only take time): the package, and
    // its client as an ES module (dist/client), which page blocks load as a browser does.
    for (const [config, outDir] of [['tsconfig.build.json', 'dist'], ['tsconfig.client.json', join('dist', 'client')]]) {
      execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', config, '--outDir', join(pkg, outDir),
        '--noCheck'], { cwd: repo, env: { ...process.env, NODE_OPTIONS: '' }, stdio: 'pipe' })
    }
    await writeFile(join(pkg, 'dist', 'client', 'package.json'), '{ "type": "module" }\n')
    await copyFile(join(repo, 'package.json'), join(pkg, 'package.json'))
    await symlink(join(repo, 'node_modules'), join(pkg, 'node_modules'), 'dir')
    // The app's dependencies are the checkout's (fastify, ioredis, @fastify/cookie, ...), and the package.
    for (const name of readdirSync(join(repo, 'node_modules'))) {
      if (name.startsWith('.')) continue
      await symlink(join(repo, 'node_modules', name), join(app, 'node_modules', name), 'dir')
    }
    await symlink(pkg, join(app, 'node_modules', 'fastify-sse-h2'), 'dir')
    const certificate = await testCertificate()
    await writeFile(join(app, 'key.pem'), certificate.key)
    await writeFile(join(app, 'cert.pem'), certificate.cert)
    teardown(() => rm(root, { recursive: true, force: true }))
    return { root, app, certificate }
  })()
  return await layoutPromise
}

interface Route { method: string, url: string }

/** A server a block runs, in a process of its own. */
interface BlockServer {
  origin: string
  protocol: Protocol
  ca: string | undefined
  routes: Route[]
  /** Log records at warn or above, and what it printed on stderr. */
  complaints: () => string[]
  stop: () => Promise<void>
}

const ENV = { NODE_OPTIONS: '', COOKIE_SECRET: 'a secret for the docs\' test', PORT: '0' }

async function startBlock (t: Test, block: Block, env: Record<string, string> = {}): Promise<BlockServer> {
  const { app, certificate } = await layout()
  const program = block.kind === 'program'
  const file = join(app, program ? 'server.mjs' : blockFile(block, '.mjs'))
  await writeFile(file, block.code)
  const args = program ? [file] : [join(__dirname, 'helpers', 'readme-block.mjs'), file]
  const child = spawn(process.execPath, args, { cwd: app, env: { ...process.env, ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const stopped = once(child, 'exit')
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await within(stopped, `${at(block)} to stop`)
  }
  t.teardown(stop)
  const complaints: string[] = []
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
    complaints.push(`stderr: ${inPage(block, chunk.trim())}`)
  })
  const ready = new Promise<{ origin: string, routes: Route[] }>((resolve, reject) => {
    let buffered = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      let newline
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        const record = parseJson(line)
        if (record?.doctest === 'listening') resolve({ origin: record.origin as string, routes: record.routes as Route[] })
        const address = /^Server listening at (https?:\/\/127\.0\.0\.1:\d+)$/.exec(String(record?.msg))
        if (address !== null) resolve({ origin: address[1], routes: [] })
        if (typeof record?.level === 'number' && record.level >= 40) complaints.push(`logged: ${inPage(block, line)}`)
      }
    })
    child.once('exit', (code, signal) => reject(new Error(
      `${title(block)} exited (${String(code ?? signal)}) before it listened:\n${inPage(block, stderr)}`)))
  })
  const { origin, routes } = await within(ready, `${title(block)} to listen`, 20_000)
  const tls = origin.startsWith('https:')
  return {
    origin,
    protocol: tls ? 'h2' : 'h2c',
    ca: tls ? certificate.cert : undefined,
    routes,
    complaints: () => complaints,
    stop
  }
}

function parseJson (line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line)
    return typeof value === 'object' && value !== null ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

function asTestServer (server: BlockServer): TestServer {
  return { protocol: server.protocol, origin: server.origin, ca: server.ca } as unknown as TestServer
}

interface Answer { status: number, headers: http2.IncomingHttpHeaders, body: string }

/** One request with a JSON body (or none), over HTTP/2, answered in full. */
async function request (t: Test, server: BlockServer, method: string, path: string, body?: unknown): Promise<Answer> {
  const session = http2.connect(server.origin, { ca: server.ca })
  t.teardown(() => session.destroy())
  session.on('error', () => {})
  const headers: http2.OutgoingHttpHeaders = { ':method': method, ':path': path }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const stream = session.request(headers)
  stream.end(body === undefined ? undefined : JSON.stringify(body))
  const [response] = await within(once(stream, 'response'), `${method} ${path}`) as [http2.IncomingHttpHeaders]
  let text = ''
  stream.setEncoding('utf8').on('data', (chunk: string) => { text += chunk })
  await within(once(stream, 'end'), `the body of ${method} ${path}`)
  session.close()
  return { status: Number(response[':status']), headers: response, body: text }
}

/** The path of a route, its parameters filled in. */
function pathOf (route: Route): string {
  return route.url.replace(/:(\w+)/g, '1')
}

/** The default probe: every route is asked once and answers without a server error. */
async function askEveryRoute (t: Test, block: Block, server: BlockServer): Promise<void> {
  for (const route of server.routes) {
    if (route.method === 'GET') {
      const client = await openStream(t, asTestServer(server), pathOf(route))
      t.ok(client.status < 500, `${at(block)}: GET ${route.url} answers ${client.status}`)
      client.close()
    } else if (route.method === 'POST') {
      const answer = await request(t, server, 'POST', pathOf(route), {})
      t.ok(answer.status < 500, `${at(block)}: POST ${route.url} answers ${answer.status}: ${answer.body}`)
    }
  }
}

interface ProbeContext {
  t: Test
  block: Block
  server: BlockServer
  /** Another instance of the same block (Redis: several instances sharing a store). */
  start: () => Promise<BlockServer>
  browser: () => Promise<Browser | undefined>
}

/** Checks of what the prose around a block promises, by the block's name: its page, `#`, its heading. */
const PROBES: Record<string, (context: ProbeContext) => Promise<void>> = {
  async 'README.md#HTTP/2 with TLS (what browsers speak)' ({ t, server, browser }) {
    const page = await request(t, server, 'GET', '/')
    t.equal(page.status, 200, 'https://localhost:8443/ answers with the page')
    t.match(page.headers['content-type'], /^text\/html/)
    const clock = await openStream(t, asTestServer(server), '/clock')
    const [first] = await clock.waitForEvents(1)
    t.equal(first.event, 'time')
    t.match(JSON.parse(first.data), { now: /^\d{4}-\d\d-\d\dT/ }, '/clock sends the time')
    clock.close()
    const chromium = await browser()
    if (chromium === undefined) {
      await t.test('the page in a browser', { skip: String(chromiumMissing) }, async () => {})
      return
    }
    const context = await chromium.newContext({ ignoreHTTPSErrors: true })
    t.teardown(() => context.close())
    const tab = await context.newPage()
    const errors: string[] = []
    tab.on('pageerror', (error) => errors.push(error.message))
    await tab.goto(server.origin.replace('127.0.0.1', 'localhost') + '/')
    await tab.waitForFunction(() => /^\d{4}-\d\d-\d\dT/.test(document.getElementById('now')?.textContent ?? ''), undefined,
      { timeout: 10_000 })
    t.pass('in a browser, the page shows the time from its EventSource')
    t.same(errors, [], 'no script error')
  },

  async 'README.md#HTTP/2 without TLS (h2c: service to service, behind a proxy that terminates TLS)' ({ t, server }) {
    t.equal(server.protocol, 'h2c', 'it listens for HTTP/2 without TLS')
    const clock = await openStream(t, asTestServer(server), '/clock')
    const [first] = await clock.waitForEvents(1)
    t.equal(first.event, 'time')
    t.match(JSON.parse(first.data), { now: /^\d{4}-\d\d-\d\dT/ }, 'a client with prior knowledge gets the time from /clock')
    clock.close()
  },

  async 'README.md#Push: a handle' ({ t, server }) {
    // One client after another: a listener left behind by each would add up to Node's warning, and to the count.
    for (let i = 0; i < 15; i++) {
      const gone = await openStream(t, asTestServer(server), '/updates')
      gone.close()
      await gone.waitForEnd()
    }
    const client = await openStream(t, asTestServer(server), '/updates')
    let streams = Infinity
    // The server notices each client's leaving a moment after it left: asked again until it has.
    for (let i = 0; i < 50 && streams > 1; i++) {
      streams = JSON.parse((await request(t, server, 'POST', '/updates', { n: i })).body).streams as number
    }
    t.equal(streams, 1, 'one listener, for the one stream open, after 16 clients came')
    const [update] = await client.waitForEvents(1)
    t.equal(update.event, 'update')
    t.same(Object.keys(JSON.parse(update.data)), ['n'], 'the update reaches the open stream')
  },

  async 'docs/operating.md#Metrics with prom-client' ({ t, server }) {
    const metrics = async (): Promise<string> => (await request(t, server, 'GET', '/metrics')).body
    const clock = await openStream(t, asTestServer(server), '/clock')
    await clock.waitForEvents(1)
    const open = await metrics()
    t.match(open, /^sse_streams_open\{protocol="http2"\} 1$/m, 'the open stream, by protocol')
    t.match(open, /^sse_streams_opened_total 1$/m)
    t.match(open, /^sse_events_sent_total [1-9]\d*$/m)
    clock.close()
    // The server notices the client's leaving a moment after it left: asked again until it has.
    let after = open
    for (let i = 0; i < 50 && !/^sse_streams_closed_total\{code="FST_SSE_CLIENT_CLOSED"\} 1$/m.test(after); i++) after = await metrics()
    t.match(after, /^sse_streams_closed_total\{code="FST_SSE_CLIENT_CLOSED"\} 1$/m, 'closed, by reason')
    t.match(after, /^sse_streams_open\{protocol="http2"\} 0$/m)
    t.match(after, /^sse_stream_duration_seconds_count\{route="\/clock",code="FST_SSE_CLIENT_CLOSED"\} 1$/m,
      'its time open, by route, from the diagnostics channels')
  },

  async 'README.md#Channels: fan-out to every subscriber' ({ t, server }) {
    await publishReachesSubscribers(t, server, server)
  },

  async 'docs/stores.md#Several instances: the Redis store' ({ t, server, start }) {
    await publishReachesSubscribers(t, server, await start())
  },

  async 'docs/steering.md#A dashboard behind a load balancer' ({ t, server, start }) {
    // The stream on one instance; the join and the message on the other, as a load balancer without sticky sessions
    // would send them.
    const other = await start()
    const dashboard = await openStream(t, asTestServer(server), '/dashboard')
    const joined = await request(t, other, 'POST', '/rooms/7/join', {})
    t.equal(joined.status, 200)
    t.match(JSON.parse(joined.body), { joined: '7', streams: 1 }, 'the open dashboard, on the other instance, carries the room')
    const sent = await request(t, other, 'POST', '/rooms/7/messages', { text: 'hi' })
    t.equal(sent.status, 200)
    const [event] = await dashboard.waitForEvents(1)
    t.same([event.event, JSON.parse(event.data)], ['message', { text: 'hi' }], 'the room\'s message, published after the join')
    t.match(event.id, /^~/, 'with a cursor for its id, which resumes both channels')
  }
}

/** POST /news with a JSON body on one instance: a subscriber of /news on the other gets it as a `news` event. */
async function publishReachesSubscribers (t: Test, publisher: BlockServer, subscriberServer: BlockServer): Promise<void> {
  const subscriber = await openStream(t, asTestServer(subscriberServer), '/news')
  const body = { title: 'Hello' }
  // The subscriber's instance follows the channel once it has a subscriber: published until it delivers.
  let answer: Answer | undefined
  for (let i = 0; i < 50 && subscriber.events.length === 0; i++) {
    answer = await request(t, publisher, 'POST', '/news', body)
    t.equal(answer.status, 200, 'POST /news publishes the body')
    if (subscriber.events.length === 0) await subscriber.waitForEvents(1, 200).catch(() => undefined)
  }
  const [event] = await subscriber.waitForEvents(1)
  t.same({ event: event.event, data: JSON.parse(event.data) }, { event: 'news', data: body }, 'as the data of a news event')
  t.match(JSON.parse(answer?.body ?? '{}'), { id: /./ }, 'POST answers with the id')
}

let browserPromise: Promise<Browser> | undefined

async function launchBrowser (t: Test): Promise<Browser | undefined> {
  if (chromiumMissing !== false) return undefined
  browserPromise ??= chromium.launch({
    executablePath: binaryPath('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync']
  })
  const browser = await browserPromise
  return browser
}

// What the docs' page snippets take for granted, and a record of the EventSources they open.
const PAGE_GIVENS = `
window.__doctest = { sources: [] }
window.EventSource = class EventSource extends window.EventSource {
  constructor (url, init) { super(url, init); window.__doctest.sources.push(this) }
}
window.reloadEverything = () => { window.__doctest.reloaded = true }
window.render = (value) => { window.__doctest.rendered = value }
window.show = (value) => { window.__doctest.shown = value }
window.showError = (status) => { window.__doctest.error = status }
window.token = async () => 'secret'
`

/** What a page block leaves for the test: its EventSources and clients (`opened` once a client opened), its error. */
interface DoctestPage {
  sources: Array<{ url: string, readyState: number, opened?: boolean }>
  failed?: string
}

async function runPage (t: Test, browser: Browser, block: Block, server: BlockServer): Promise<void> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  t.teardown(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(error.message))
  await page.addInitScript(PAGE_GIVENS)
  await page.goto(`${server.origin}/__doctest/page`)
  // As a module of the page, so that `import` resolves through its import map and a top-level `await` works. Not
  // waited for: a block may read a stream for as long as the page lives (`for await`).
  await page.evaluate(`import(URL.createObjectURL(new Blob([${JSON.stringify(block.code)}], { type: 'text/javascript' })))
    .catch((error) => { window.__doctest.failed = String(error && error.stack || error) })`)
  // Until every one it opened is open (a client: opened once), or it threw.
  const outcome = (): { opened: boolean, failed: string | undefined, states: string[] } => {
    const { sources, failed } = (window as unknown as { __doctest: DoctestPage }).__doctest
    return {
      opened: sources.length > 0 && sources.every((source) => source.readyState === EventSource.OPEN || source.opened === true),
      failed,
      states: sources.map((source) => `${source.url}: ${['connecting', 'open', 'closed'][source.readyState]}`)
    }
  }
  await page.waitForFunction(`((${outcome.toString()})()).opened || ((${outcome.toString()})()).failed !== undefined`)
    .catch(() => {})
  const { opened, failed, states } = await page.evaluate(outcome)
  t.equal(failed, undefined, `${title(block)} threw nothing in the page`)
  t.ok(opened, `${at(block)}: every EventSource or client it opens opens (${states.join(', ') || 'none opened'})`)
  t.same(errors, [], `${at(block)}: no script error`)
}

/** Runs a test block as the reader would, `node --test` in an app that installed the package: it must pass. */
async function runTestFile (t: Test, block: Block): Promise<void> {
  const { app } = await layout()
  const file = join(app, blockFile(block, '.test.mjs'))
  await writeFile(file, block.code)
  const child = spawn(process.execPath, ['--test', file], { cwd: app, env: { ...process.env, ...ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const [code] = await within(once(child, 'exit'), `${title(block)} to run its tests`, 30_000)
  t.equal(code, 0, `${title(block)}: node --test passes${code === 0 ? '' : `:\n${inPage(block, output)}`}`)
}

/** The server block a page runs against: the first under its `on` heading, or the closest above it in its file. */
function serverOf (blocks: Block[], page: Block): Block {
  const servers = blocks.filter((block) => block.kind === 'fragment' || block.kind === 'program')
  const found = page.on !== undefined
    ? servers.find((block) => `${block.file}#${block.heading}` === page.on)
    : servers.filter((block) => block.file === page.file && block.line < page.line).at(-1)
  if (found === undefined) {
    throw new Error(`${at(page)}: no server block ${page.on === undefined ? 'above it' : `under "${page.on}"`}`)
  }
  return found
}

/** Type-checks the ts blocks against the package's types; an interface the package exports too must match it. */
async function checkTypes (t: Test, block: Block): Promise<void> {
  const { app } = await layout()
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    types: ['node'],
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    typeRoots: [join(app, 'node_modules', '@types')]
  }
  const exportsFile = join(app, 'doctest-exports.ts')
  await writeFile(exportsFile, "import type * as Package from 'fastify-sse-h2'\nimport type * as Fastify from 'fastify'\n" +
    'export type { Package, Fastify }\n')
  const probe = ts.createProgram([exportsFile], options)
  const checker = probe.getTypeChecker()
  const exported = (module: string): string[] => {
    const source = probe.getSourceFile(exportsFile) as ts.SourceFile
    const statement = source.statements.find((node) => ts.isImportDeclaration(node) &&
      (node.moduleSpecifier as ts.StringLiteral).text === module) as ts.ImportDeclaration
    const symbol = checker.getSymbolAtLocation(statement.moduleSpecifier) as ts.Symbol
    return checker.getExportsOfModule(symbol).map((exportedSymbol) => exportedSymbol.name)
  }
  const declared = new Set<string>()
  const referenced = new Set<string>()
  const parsed = ts.createSourceFile('block.ts', block.code, ts.ScriptTarget.ES2022)
  const values = new Set<string>()
  for (const statement of parsed.statements) {
    if ((ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement) || ts.isClassDeclaration(statement)) &&
      statement.name !== undefined) declared.add(statement.name.text)
    if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name)) values.add(declaration.name.text)
      }
    }
    if (ts.isImportDeclaration(statement)) {
      for (const node of [statement.importClause?.name, ...(statement.importClause?.namedBindings !== undefined &&
        ts.isNamedImports(statement.importClause.namedBindings)
        ? statement.importClause.namedBindings.elements.map((element) => element.name)
        : [])]) {
        if (node !== undefined) values.add(node.text)
      }
    }
  }
  const visit = (node: ts.Node): void => {
    if (ts.isTypeReferenceNode(node) && ts.isIdentifier(node.typeName)) referenced.add(node.typeName.text)
    ts.forEachChild(node, visit)
  }
  visit(parsed)
  const packageNames = new Set(exported('fastify-sse-h2'))
  const fastifyNames = new Set(exported('fastify'))
  // After the block, so that its lines keep their numbers: the types it uses from the package and from Fastify.
  let prelude = "\nimport type * as Package from 'fastify-sse-h2'\nimport type * as Fastify from 'fastify'\n"
  for (const name of referenced) {
    // Its own types, and the names it imports itself.
    if (declared.has(name) || values.has(name)) continue
    if (packageNames.has(name)) prelude += `type ${name} = Package.${name}\n`
    else if (fastifyNames.has(name)) prelude += `type ${name} = Fastify.${name}\n`
  }
  // What a js block is given, for a ts block that uses it too (`app.get(...)` with typed routes).
  if (!values.has('app')) prelude += 'declare const app: Fastify.FastifyInstance\n'
  if (!values.has('sse')) prelude += 'declare const sse: typeof Package.default\n'
  prelude += 'type Same<A, B> = [A] extends [B] ? [B] extends [A] ? true : false : false\n'
  const compared = [...declared].filter((name) => packageNames.has(name))
  for (const name of compared) {
    prelude += `export const same${name}: Same<${name}, Package.${name}> = true\n`
    prelude += `export const sameMembersOf${name}: Same<keyof ${name}, keyof Package.${name}> = true\n`
  }
  const file = join(app, blockFile(block, '.ts'))
  await writeFile(file, block.code + prelude)
  const program = ts.createProgram([file], options)
  const blockLines = block.code.split('\n').length - 1
  const problems = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')
    if (diagnostic.file === undefined || diagnostic.start === undefined) return message
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
    if (diagnostic.file.fileName !== file) return `${diagnostic.file.fileName}: ${message}`
    if (line >= blockLines) {
      const text = diagnostic.file.text.split('\n')[line]
      const name = compared.find((candidate) => text.includes(`same${candidate}:`) || text.includes(`sameMembersOf${candidate}:`))
      if (name === undefined) return `(the names given to it) ${text}: ${message}`
      return `its ${name} is not the package's ${name} (the same members, each assignable to the other)`
    }
    return `${block.file}:${block.line + line + 1}: ${message}`
  })
  t.same(problems, [], `${title(block)} compiles against the package's types` +
    (compared.length > 0 ? `, and its ${compared.join(', ')} is the package's` : ''))
}

const pages = new Map(PAGES.map((page) => [page, readFileSync(join(repo, page), 'utf8')]))
const blocks = [...pages].flatMap(([page, markdown]) => readBlocks(page, markdown))

/** The anchors GitHub gives a page's headings (github-slugger): lower case, punctuation dropped, spaces as `-`. */
function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const [, heading] of withoutCode(markdown).matchAll(/^#{1,6}\s+(.*?)\s*#*\s*$/gm)) {
    const slug = heading.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** A page with its fenced blocks blanked (their lines kept), so that nothing in them reads as a heading or a link. */
function withoutCode (markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, (block) => block.replace(/[^\n]/g, ''))
}

test('docs/api.md: its Errors section has every error code the plugin raises', async (t) => {
  const api = pages.get('docs/api.md') ?? ''
  const start = api.indexOf('\n## Errors')
  t.not(start, -1, 'docs/api.md has a ## Errors section')
  const end = api.indexOf('\n## ', start + 1)
  const section = api.slice(start, end === -1 ? undefined : end)
  t.same(Object.keys(errors).filter((code) => !section.includes(`\`${code}\``)), [], 'none missing from docs/api.md\'s ## Errors')
})

test('every relative link of the docs leads to a file, and every #anchor to a heading of it', async (t) => {
  const broken: string[] = []
  for (const page of LINKED_PAGES) {
    const lines = withoutCode(readFileSync(join(repo, page), 'utf8')).split('\n')
    lines.forEach((text, index) => {
      // Inline code is no link, but a link's text may be code: [`EventStream`](#eventstream).
      for (const [, target] of text.replace(/`[^`]*`/g, 'code').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z][\w+.-]*:/i.test(target)) continue   // https:, mailto:
        const [path, anchor] = target.split('#')
        const file = path === '' ? page : relative(repo, resolve(repo, dirname(page), path))
        if (!existsSync(join(repo, file))) {
          broken.push(`${page}:${index + 1}: ${target}: no file ${file}`)
        } else if (anchor !== undefined && !(file.endsWith('.md') && anchorsOf(readFileSync(join(repo, file), 'utf8')).has(anchor))) {
          broken.push(`${page}:${index + 1}: ${target}: no heading of ${file} has the anchor #${anchor}`)
        }
      }
    })
  }
  t.same(broken, [], `the links of ${LINKED_PAGES.join(', ')}`)
})

/** The blocks README_BLOCKS asks for: `docs/api.md` (a page), `docs/api.md:120` (a block), `120` (of any page). */
function selected (block: Block): boolean {
  const only = process.env.README_BLOCKS?.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
  if (only === undefined || only.length === 0) return true
  return only.some((entry) => /^\d+$/.test(entry)
    ? block.line === Number(entry)
    : entry.includes(':') ? entry === at(block) : entry === block.file)
}

test('the docs: every js and ts block runs as written', async (t) => {
  const names = new Set(blocks.map((block) => block.name))
  t.same(Object.keys(PROBES).filter((name) => !names.has(name)), [], 'every probe has its block (a heading renamed, a block moved?)')
  let redisUrl: string | undefined

  const allBlocks = t
  for (const block of blocks) {
    if (!selected(block)) continue
    const label = title(block)
    if (block.kind === 'skip') {
      await t.test(label, { skip: `<!-- doctest: skip --> ${String(block.skipReason)}` }, async () => {})
      continue
    }
    if (block.kind === 'types') {
      await t.test(label, async (t) => { await checkTypes(t, block) })
      continue
    }
    if (block.kind === 'test') {
      await t.test(label, async (t) => { await runTestFile(t, block) })
      continue
    }
    const needsRedis = block.needs.includes('redis-server')
    if (needsRedis && redisMissing !== false) {
      await t.test(label, { skip: redisMissing }, async () => {})
      continue
    }
    if (block.kind === 'page') {
      await t.test(label, { skip: chromiumMissing }, async (t) => {
        const server = await startBlock(t, serverOf(blocks, block))
        await runPage(t, await launchBrowser(t) as Browser, block, server)
        t.same(server.complaints(), [], 'its server logged no warning or error')
      })
      continue
    }
    await t.test(label, async (t) => {
      // One Redis for all the blocks: started by the first that needs it, stopped after the last.
      if (needsRedis) redisUrl ??= (await startRedis(allBlocks)).url
      const env: Record<string, string> = redisUrl === undefined ? {} : { REDIS_URL: redisUrl }
      const server = await startBlock(t, block, env)
      const probe = PROBES[block.name]
      const others: BlockServer[] = []
      if (probe === undefined) {
        await askEveryRoute(t, block, server)
      } else {
        await probe({
          t,
          block,
          server,
          start: async () => {
            const other = await startBlock(t, block, env)
            others.push(other)
            return other
          },
          browser: async () => await launchBrowser(t)
        })
      }
      t.same([server, ...others].flatMap((one) => one.complaints()), [], 'it logged no warning or error, and printed nothing on stderr')
    })
  }
  if (browserPromise !== undefined) await (await browserPromise).close()
})
