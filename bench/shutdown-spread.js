'use strict'

// `node bench/shutdown-spread.js`: how the clients of an instance that closes come back, over time, to the
// instance that stays. Instance A holds the streams; at app.close() it tells each one to reconnect after a
// delay drawn from `shutdownRetry`, then ends it. The load client reconnects as EventSource does (after the
// last `retry:` it saw, with Last-Event-ID) to instance B, on new connections. B counts the arrivals and
// watches its event loop. Each in a process of its own, on h2c.
//   --streams N (default 10000)  --per-session N streams per connection (default 10)
//   --only herd|spread  (default: both; herd is shutdownRetry { min: 3000, max: 3000 }: all come back at
//   once, as they did before shutdownRetry, after EventSource's default delay of about 3 s)
// Prints a table, and writes it to bench/results/shutdown-spread.md.

const { fork } = require('node:child_process')
const { once } = require('node:events')
const { writeFileSync } = require('node:fs')
const { resolve } = require('node:path')
const http2 = require('node:http2')

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const STREAMS = Number(option('--streams', 10_000))
const PER_SESSION = Number(option('--per-session', 10))
const SCENARIOS = {
  herd: { min: 3000, max: 3000 },
  spread: { min: 1000, max: 10_000 }
}
const ONLY = option('--only', undefined)

// ---- a server: the plugin from dist/, a channel to subscribe to ---------------------------------------------
async function server (shutdownRetry) {
  const { monitorEventLoopDelay } = require('node:perf_hooks')
  const Fastify = require('fastify')
  const sse = require('..')
  const app = Fastify({ http2: true })
  await app.register(sse, { shutdownRetry, heartbeatInterval: 15_000 })
  const channel = app.sse.channel('news')
  const arrivals = []
  app.addHook('onRequest', async () => { arrivals.push(Date.now()) })
  app.get('/news', (request, reply) => reply.sse(channel))
  // Runs once the plugin's own preClose hook is done: every connection of its streams closed, or destroyed.
  let connectionsClosedAt
  app.addHook('preClose', async () => { connectionsClosedAt = Date.now() })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const delay = monitorEventLoopDelay({ resolution: 10 })
  process.on('message', async (message) => {
    if (message === 'publish') {
      // One event, so that every stream has an id to come back with.
      await channel.publish({ event: 'news', data: 'hello' })
    } else if (message === 'watch') {
      arrivals.length = 0
      delay.enable()
      process.send({ type: 'watching' })
    } else if (message === 'close') {
      const started = Date.now()
      await app.close()
      process.send({ type: 'closed', started, ms: Date.now() - started, connectionsMs: connectionsClosedAt - started })
      process.exit(0)
    } else if (message === 'report') {
      delay.disable()
      process.send({ type: 'report', arrivals, delayMax: delay.max / 1e6, delayP99: delay.percentile(99) / 1e6 })
      await app.close()
      process.exit(0)
    }
  })
  process.send({ type: 'listening', address })
}

// ---- the load client: streams that reconnect as EventSource does --------------------------------------------
function client (fromOrigin, toOrigin) {
  const sessions = new Map()
  const session = (origin, index) => {
    const key = `${origin} ${Math.floor(index / PER_SESSION)}`
    let entry = sessions.get(key)
    if (entry === undefined) {
      entry = http2.connect(origin, { settings: { initialWindowSize: 1024 * 1024 } })
      entry.on('error', () => {})
      sessions.set(key, entry)
    }
    return entry
  }
  const reconnects = []
  let opened = 0
  let received = 0
  let reconnected = 0

  function follow (index) {
    const stream = session(fromOrigin, index).request({ ':path': '/news' })
    stream.setEncoding('utf8')
    let text = ''
    let counted = false
    stream.once('response', () => {
      if (++opened === STREAMS) process.send({ type: 'opened' })
    })
    stream.on('data', (chunk) => {
      text += chunk
      if (!counted && text.includes('\n\n')) {
        counted = true
        if (++received === STREAMS) process.send({ type: 'ready' })
      }
    })
    stream.on('error', () => {})
    stream.on('close', () => {
      const retries = [...text.matchAll(/^retry: (\d+)$/gm)]
      const ids = [...text.matchAll(/^id: (.*)$/gm)]
      // EventSource's default delay when the server never said (Chrome and Firefox: about 3 s).
      const retry = retries.length === 0 ? 3000 : Number(retries[retries.length - 1][1])
      const lastEventId = ids.length === 0 ? undefined : ids[ids.length - 1][1]
      const endedAt = Date.now()
      setTimeout(() => reconnect(index, lastEventId, endedAt), retry)
    })
  }

  function reconnect (index, lastEventId, endedAt) {
    const sentAt = Date.now()
    const headers = { ':path': '/news' }
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId
    const stream = session(toOrigin, index).request(headers)
    stream.on('error', () => {})
    stream.once('response', () => {
      reconnects.push({ endedAt, sentAt, openedAt: Date.now() })
      if (++reconnected === STREAMS) process.send({ type: 'reconnected', reconnects })
    })
  }

  process.on('message', (message) => {
    if (message === 'open') for (let i = 0; i < STREAMS; i++) follow(i)
    else if (message === 'exit') process.exit(0)
  })
}

// ---- the runner ------------------------------------------------------------------------------------------------
function percentile (sorted, q) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function expect (proc, type) {
  for (;;) {
    const [message] = await once(proc, 'message')
    if (message.type === type) return message
  }
}

async function runScenario (name, shutdownRetry) {
  const a = fork(__filename, ['server', JSON.stringify(shutdownRetry)])
  const b = fork(__filename, ['server', JSON.stringify(shutdownRetry)])
  const [{ address: fromOrigin }, { address: toOrigin }] = await Promise.all([expect(a, 'listening'), expect(b, 'listening')])
  const load = fork(__filename, ['client', fromOrigin, toOrigin, '--streams', String(STREAMS), '--per-session', String(PER_SESSION)])
  load.send('open')
  await expect(load, 'opened')
  a.send('publish')
  await expect(load, 'ready')
  b.send('watch')
  await expect(b, 'watching')
  a.send('close')
  const closed = await expect(a, 'closed')
  const { reconnects } = await expect(load, 'reconnected')
  b.send('report')
  const report = await expect(b, 'report')
  load.send('exit')

  const t0 = closed.started
  const arrivals = report.arrivals.map((at) => at - t0).sort((x, y) => x - y)
  const perSecond = new Map()
  for (const at of arrivals) perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1)
  let peak100 = 0
  for (let i = 0, j = 0; i < arrivals.length; i++) {
    while (arrivals[i] - arrivals[j] >= 100) j++
    peak100 = Math.max(peak100, i - j + 1)
  }
  const openMs = reconnects.map((r) => r.openedAt - r.sentAt).sort((x, y) => x - y)
  return {
    name,
    shutdownRetry,
    closeMs: closed.ms,
    connectionsMs: closed.connectionsMs,
    first: arrivals[0],
    last: arrivals[arrivals.length - 1],
    peakPerSecond: Math.max(...perSecond.values()),
    peak100,
    perSecond: [...perSecond.entries()].sort((x, y) => x[0] - y[0]),
    openP50: percentile(openMs, 0.5),
    openP99: percentile(openMs, 0.99),
    openMax: openMs[openMs.length - 1],
    delayMax: report.delayMax,
    delayP99: report.delayP99
  }
}

async function main () {
  const results = []
  for (const [name, window] of Object.entries(SCENARIOS)) {
    if (ONLY !== undefined && ONLY !== name) continue
    console.log(`${name}: ${STREAMS} streams over h2c (${PER_SESSION} a connection), shutdownRetry ${JSON.stringify(window)}`)
    results.push(await runScenario(name, window))
  }
  const lines = [
    `${STREAMS} streams on instance A, ${PER_SESSION} a connection, reconnecting to instance B (h2c, one 2-core machine). ` +
    'Times from the start of A\'s app.close().',
    '',
    '| shutdownRetry | A\'s app.close() (its streams\' connections closed after) | reconnects from / to | peak reconnects in 1 s | in 100 ms | reconnect to B: headers p50 / p99 / max | B\'s event loop delay p99 / max |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map((r) => `| \`{ min: ${r.shutdownRetry.min}, max: ${r.shutdownRetry.max} }\` (${r.name}) | ` +
      `${r.closeMs} ms (${r.connectionsMs} ms) | ` +
      `${(r.first / 1000).toFixed(2)} s / ${(r.last / 1000).toFixed(2)} s | ${r.peakPerSecond} | ${r.peak100} | ` +
      `${r.openP50} / ${r.openP99} / ${r.openMax} ms | ${r.delayP99.toFixed(0)} / ${r.delayMax.toFixed(0)} ms |`),
    '',
    'Reconnects per second:',
    '',
    ...results.map((r) => `- ${r.name}: ${r.perSecond.map(([second, count]) => `${second}-${second + 1} s: ${count}`).join(', ')}`)
  ]
  console.log(lines.join('\n'))
  writeFileSync(resolve(__dirname, 'results/shutdown-spread.md'), lines.join('\n') + '\n')
}

if (args[0] === 'server') server(JSON.parse(args[1]))
else if (args[0] === 'client') client(args[1], args[2])
else main()
