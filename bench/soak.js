'use strict'

// `npm run soak`: thousands of streams held for a set time over h2c on loopback, each dropped now and then
// (RST_STREAM) and reopened with the last event id it saw, while a channel publishes at a steady rate.
// Every client checks that it sees every event id exactly once, in order, across its reconnects. Exits 1 if
// one event was lost or seen twice.
//   --seconds N (default 60)  --streams N (default 2000)  --rate N events/s (default 200)
//   --reconnect-every N: each stream is dropped after a random 0..2N seconds (default 10)

const { fork } = require('node:child_process')
const { once } = require('node:events')
const http2 = require('node:http2')

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : Number(args[i + 1])
}
const SECONDS = option('--seconds', 60)
const STREAMS = option('--streams', 2000)
const RATE = option('--rate', 200)
const RECONNECT_EVERY = option('--reconnect-every', 10)
const PER_SESSION = 100

// ---- the server: the plugin from dist/, one channel, a steady publisher ------------------------------------
async function server () {
  const Fastify = require('fastify')
  const sse = require('..')
  const app = Fastify({ http2: true })
  // History long enough to cover any reconnect: a client is never more than a few seconds behind.
  await app.register(sse, { historySize: RATE * 30, heartbeatInterval: 5000 })
  const channel = app.sse.channel('soak')
  app.get('/soak', (request, reply) => reply.sse(channel))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  let published = 0
  let timer
  const memory = () => {
    const { rss, heapUsed } = process.memoryUsage()
    return { rss, heapUsed }
  }
  process.on('message', async (message) => {
    if (message === 'start') {
      // Each event's data is its publish time, for the client's latency figures.
      const started = Date.now()
      timer = setInterval(() => {
        const due = Math.floor(((Date.now() - started) * RATE) / 1000)
        while (published < due) {
          channel.publish(String(Date.now()))
          published++
        }
      }, 10)
      process.send({ type: 'memory', ...memory() })
    } else if (message === 'stop') {
      clearInterval(timer)
      process.send({ type: 'stopped', published, lastId: await channel.publish('last'), ...memory() })
    } else if (message === 'close') {
      await app.close()
      process.exit(0)
    }
  })
  process.send({ type: 'listening', address })
}

// ---- the runner and its clients ------------------------------------------------------------------------------
class Follower {
  constructor (sessions, index) {
    this.sessions = sessions
    this.index = index
    this.lastId = undefined
    this.firstId = undefined
    this.received = 0
    this.duplicates = 0
    this.outOfOrder = 0
    this.reconnects = 0
    this.missed = 0
    this.latencies = []
    this.rest = ''
  }

  open () {
    const headers = { ':path': '/soak' }
    if (this.lastId !== undefined) headers['last-event-id'] = String(this.lastId)
    const stream = this.sessions.pick(this.index).request(headers)
    this.stream = stream
    this.rest = ''
    stream.setEncoding('utf8')
    // What is still on its way from a stream already dropped is not this client's any more.
    stream.on('data', (chunk) => { if (this.stream === stream) this.read(chunk) })
    stream.on('error', () => {})
    stream.on('close', () => { if (this.stream === stream && !this.stopping) this.reopenSoon(0) })
    this.dropLater()
  }

  // Blocks are `id: N\ndata: T` (the channel's events), `:` (heartbeats), or `id: N\nevent: missed\n...`.
  read (chunk) {
    const now = Date.now()
    const text = this.rest + chunk
    let start = 0
    let end
    while ((end = text.indexOf('\n\n', start)) !== -1) {
      const block = text.slice(start, end)
      start = end + 2
      if (!block.startsWith('id: ')) continue
      const lineEnd = block.indexOf('\n')
      const id = Number(block.slice(4, lineEnd))
      const rest = block.slice(lineEnd + 1)
      if (rest.startsWith('event: missed')) {
        this.missed++
        continue
      }
      const data = rest.slice(6)
      if (data === 'last') {
        this.sawLast = id
        continue
      }
      if (this.lastId !== undefined && id <= this.lastId) {
        if (id === this.lastId) this.duplicates++
        else this.outOfOrder++
        continue
      }
      this.firstId ??= id
      this.lastId = id
      this.received++
      if (this.received % 10 === 0) this.latencies.push(now - Number(data))
    }
    this.rest = text.slice(start)
  }

  dropLater () {
    clearTimeout(this.dropTimer)
    this.dropTimer = setTimeout(() => {
      this.reconnects++
      const stream = this.stream
      this.stream = undefined
      stream.close(http2.constants.NGHTTP2_CANCEL)
      this.open()
    }, Math.random() * RECONNECT_EVERY * 2000)
  }

  reopenSoon (ms) {
    clearTimeout(this.dropTimer)
    this.dropTimer = setTimeout(() => this.open(), ms)
  }

  stop () {
    this.stopping = true
    clearTimeout(this.dropTimer)
  }
}

/** Sessions that each carry PER_SESSION streams' worth of opens, then are replaced (Node limits rapid resets). */
class Sessions {
  constructor (origin) {
    this.origin = origin
    this.slots = new Map()
  }

  pick (index) {
    const slot = Math.floor(index / PER_SESSION)
    let entry = this.slots.get(slot)
    if (entry === undefined || entry.session.destroyed || entry.session.closed || entry.opened >= PER_SESSION * 20) {
      entry?.session.close()
      const session = http2.connect(this.origin, { settings: { initialWindowSize: 1024 * 1024 } })
      session.on('error', () => {})
      entry = { session, opened: 0 }
      this.slots.set(slot, entry)
    }
    entry.opened++
    return entry.session
  }

  close () {
    for (const { session } of this.slots.values()) session.destroy()
  }
}

function percentile (sorted, q) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function main () {
  const proc = fork(__filename, ['server'])
  const message = async (type) => {
    for (;;) {
      const [received] = await once(proc, 'message')
      if (received.type === type) return received
    }
  }
  const { address } = await message('listening')
  const sessions = new Sessions(address)
  const followers = Array.from({ length: STREAMS }, (_, i) => new Follower(sessions, i))
  for (const follower of followers) follower.open()
  proc.send('start')
  const before = await message('memory')
  console.log(`soak: ${STREAMS} streams over h2c, ${RATE} events/s, a reconnect per stream every ${RECONNECT_EVERY} s ` +
    `on average, for ${SECONDS} s`)
  const progress = setInterval(() => {
    const reconnects = followers.reduce((sum, f) => sum + f.reconnects, 0)
    console.log(`  ${Math.round(process.uptime())} s: ${reconnects} reconnects so far`)
  }, 10_000)
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  clearInterval(progress)
  for (const follower of followers) follower.stop()
  proc.send('stop')
  const after = await message('stopped')
  // Every client must reach the last event: it has then seen (or missed) everything before it.
  const deadline = Date.now() + 30_000
  while (followers.some((f) => f.sawLast === undefined) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const published = after.published
  let lost = 0
  // Ids are increasing decimals, one per publish: each client must have every id from its first to the last.
  for (const follower of followers) {
    if (follower.sawLast === undefined) { lost += published; continue }
    // Memory-store ids are consecutive: a client must have every one from its first to the last.
    lost += Number(after.lastId) - follower.firstId - follower.received
  }
  const duplicates = followers.reduce((sum, f) => sum + f.duplicates, 0)
  const outOfOrder = followers.reduce((sum, f) => sum + f.outOfOrder, 0)
  const reconnects = followers.reduce((sum, f) => sum + f.reconnects, 0)
  const missed = followers.reduce((sum, f) => sum + f.missed, 0)
  const delivered = followers.reduce((sum, f) => sum + f.received, 0)
  const latencies = followers.flatMap((f) => f.latencies).sort((a, b) => a - b)
  proc.send('close')
  sessions.close()
  const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
  console.log([
    '',
    `streams held:        ${STREAMS}`,
    `reconnects:          ${reconnects} (${(reconnects / SECONDS).toFixed(1)}/s), each with Last-Event-ID`,
    `events published:    ${published} (${(published / SECONDS).toFixed(0)}/s)`,
    `events delivered:    ${delivered} (${Math.round(delivered / SECONDS)}/s)`,
    `lost:                ${lost}`,
    `duplicates:          ${duplicates}`,
    `out of order:        ${outOfOrder}`,
    `told they missed:    ${missed}`,
    `latency p50 / p99:   ${percentile(latencies, 0.5)} ms / ${percentile(latencies, 0.99)} ms (publish to receipt, one event in ten, replays included)`,
    `server RSS:          ${mib(before.rss)} at start, ${mib(after.rss)} at the end`,
    `server heap:         ${mib(before.heapUsed)} at start, ${mib(after.heapUsed)} at the end`
  ].join('\n'))
  await once(proc, 'exit')
  if (lost !== 0 || duplicates !== 0 || outOfOrder !== 0 || missed !== 0) process.exitCode = 1
  process.exit()
}

if (args[0] === 'server') server()
else main()
