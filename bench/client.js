'use strict'

// The load client: one HTTP/2 client in a process of its own. It counts events (not bytes), checks that
// each stream gets its events in order with none lost, and reports over IPC. `node bench/client.js parse`
// measures its parser alone, with no network, to show how far the client is from being the limit.

const http2 = require('node:http2')
const { StringDecoder } = require('node:string_decoder')

const WINDOW = 8 * 1024 * 1024

/**
 * Counts the events of one stream: blocks ended by a blank line that hold a data line. The first number
 * in the data is the event's sequence number: it must be the one expected next. Blocks with no data line
 * (heartbeat comments, a `retry:` field) are counted apart.
 */
class Counter {
  constructor (onEvent) {
    this.rest = ''
    this.events = 0
    this.comments = 0
    this.disorder = 0
    this.onEvent = onEvent
  }

  feed (chunk) {
    const text = this.rest === '' ? chunk : this.rest + chunk
    let start = 0
    let end
    while ((end = text.indexOf('\n\n', start)) !== -1) {
      const data = text.indexOf('data:', start)
      if (data !== -1 && data < end) {
        let i = data + 5
        while (i < end && (text.charCodeAt(i) < 48 || text.charCodeAt(i) > 57)) i++
        let n = 0
        while (i < end && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) n = n * 10 + text.charCodeAt(i++) - 48
        if (n !== this.events) this.disorder++
        this.events++
        this.onEvent()
      } else {
        this.comments++
      }
      start = end + 2
    }
    this.rest = start === text.length ? '' : text.slice(start)
  }
}

async function connect (origin) {
  // A browser's windows (Chrome: 6 MiB a stream, 15 MiB a connection): the client must not be the limit.
  const session = http2.connect(origin, { settings: { initialWindowSize: WINDOW } })
  session.on('error', () => {})
  await new Promise((resolve, reject) => {
    session.once('remoteSettings', resolve)
    session.once('error', reject)
  })
  session.setLocalWindowSize(WINDOW * 2)
  return session
}

function open (session, path, onEvent) {
  const counter = new Counter(onEvent)
  const stream = session.request({ ':path': path, accept: 'text/event-stream' })
  stream.setEncoding('utf8')
  stream.on('error', () => {})
  stream.on('data', (chunk) => counter.feed(chunk))
  const headers = new Promise((resolve, reject) => {
    stream.once('response', resolve)
    stream.once('close', () => reject(new Error(`${path} closed before its headers`)))
  })
  const ended = new Promise((resolve) => stream.once('close', resolve))
  return { stream, counter, headers, ended }
}

/** Sends a message to the runner and waits for its answer. */
function ask (message) {
  return new Promise((resolve) => {
    process.once('message', resolve)
    process.send(message)
  })
}

async function sessions (origin, count) {
  const list = await Promise.all(Array.from({ length: count }, () => connect(origin)))
  const limit = list[0].remoteSettings.maxConcurrentStreams
  return { list, limit }
}

async function openMany ({ list, limit }, total, path, onEvent) {
  if (Math.ceil(total / list.length) > limit) {
    throw new Error(`${total} streams over ${list.length} connections: the server allows ${limit} a connection`)
  }
  const streams = []
  for (let i = 0; i < total; i++) streams.push(open(list[i % list.length], path, onEvent))
  await Promise.all(streams.map((s) => s.headers))
  return streams
}

/** The client's own CPU time (µs) and wall time (ns) since `since`. */
function usage (since) {
  const cpu = process.cpuUsage(since.cpu)
  return { cpuMicros: cpu.user + cpu.system, wallNanos: process.hrtime.bigint() - since.wall }
}

function utilization (since) {
  const { cpuMicros, wallNanos } = usage(since)
  return cpuMicros * 1000 / Number(wallNanos)
}

function mark () {
  return { cpu: process.cpuUsage(), wall: process.hrtime.bigint() }
}

const scenarios = {
  async pull ({ origin, streams, connections, count, size, path = '/pull' }) {
    const pool = await sessions(origin, connections)
    const since = mark()
    const opened = await openMany(pool, streams, `${path}?count=${count}&size=${size}`, () => {})
    await Promise.all(opened.map((s) => s.ended))
    const seconds = Number(process.hrtime.bigint() - since.wall) / 1e9
    const events = opened.reduce((sum, s) => sum + s.counter.events, 0)
    const disorder = opened.reduce((sum, s) => sum + s.counter.disorder, 0)
    return { seconds, events, expected: streams * count, disorder, perSecond: events / seconds, clientCpu: utilization(since) }
  },

  async fanout ({ origin, subscribers, connections, count, timeoutMs, path = '/sub' }) {
    const pool = await sessions(origin, connections)
    let delivered = 0
    let done
    const all = new Promise((resolve) => { done = resolve })
    const expected = subscribers * count
    const opened = await openMany(pool, subscribers, path, () => { if (++delivered === expected) done() })
    // The runner checks that the server counts every subscriber, then says go; the clock starts here.
    await ask({ subscribed: subscribers })
    const since = mark()
    process.send({ go: true })
    let timer
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([all, timeout])
    clearTimeout(timer)
    const seconds = Number(process.hrtime.bigint() - since.wall) / 1e9
    const disorder = opened.reduce((sum, s) => sum + s.counter.disorder, 0)
    return { seconds, events: delivered, expected, disorder, perSecond: delivered / seconds, clientCpu: utilization(since) }
  },

  async idle ({ origin, streams, connections }) {
    const pool = await sessions(origin, connections)
    await ask({ baseline: true })
    const opened = await openMany(pool, streams, '/idle', () => {})
    const comments = () => opened.reduce((sum, s) => sum + s.counter.comments, 0)
    // The runner measures; for the heartbeat scenario it asks how many comments arrived meanwhile.
    for (;;) {
      const message = await ask({ measure: true, comments: comments() })
      if (message.done) break
    }
    const events = opened.reduce((sum, s) => sum + s.counter.events, 0)
    for (const s of opened) s.stream.close()
    return { streams: opened.length, events }
  },

  async churn ({ origin, seconds, concurrency }) {
    await ask({ baseline: true })
    const until = Date.now() + seconds * 1000
    let done = 0
    const since = mark()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      // Node answers a connection that resets streams very fast with GOAWAY (the HTTP/2 "rapid reset"
      // mitigation): like many browsers, each worker uses a connection for a while, then a new one.
      let session
      for (let i = 0; Date.now() < until; i++) {
        if (i % 100 === 0) {
          session?.close()
          session = await connect(origin)
        }
        const s = open(session, '/idle', () => {})
        await s.headers
        s.stream.close(http2.constants.NGHTTP2_CANCEL)
        await s.ended
        done++
      }
      session.close()
    }))
    const elapsed = Number(process.hrtime.bigint() - since.wall) / 1e9
    const clientCpu = utilization(since)
    await ask({ measure: true })
    return { streams: done, perSecond: done / elapsed, clientCpu }
  }
}

/**
 * The parser alone: the bytes of `events` events as the raw server frames them, in chunks the size of a
 * full HTTP/2 DATA frame, decoded as the client decodes them. Events per second, no network.
 */
function parseAlone (events = 2_000_000, size = 64) {
  const chunks = []
  let text = ''
  for (let i = 0; i < events; i++) text += 'id: ' + i + '\ndata: ' + String(i).padEnd(size, '.') + '\n\n'
  const bytes = Buffer.from(text)
  for (let offset = 0; offset < bytes.length; offset += 16384) chunks.push(bytes.subarray(offset, offset + 16384))
  let best = 0
  for (let round = 0; round < 3; round++) {
    const decoder = new StringDecoder('utf8')
    const counter = new Counter(() => {})
    const started = process.hrtime.bigint()
    for (const chunk of chunks) counter.feed(decoder.write(chunk))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    if (counter.events !== events || counter.disorder !== 0) throw new Error('the parser miscounted')
    best = Math.max(best, events / seconds)
  }
  return best
}

// bench/cost.js counts events with the same parser, in the server's process.
module.exports = { Counter, connect }

if (require.main !== module) {
  // required: nothing to run
} else if (process.argv[2] === 'parse') {
  const perSecond = parseAlone()
  if (process.send) process.send({ result: { perSecond } })
  else console.log(`parser alone: ${Math.round(perSecond).toLocaleString('en-US')} events/s`)
} else {
  const options = JSON.parse(process.argv[2])
  scenarios[options.scenario]({ ...options, origin: `http://127.0.0.1:${options.port}` }).then(
    (result) => process.send({ result }),
    (error) => process.send({ error: String(error && error.stack) })
  )
}
