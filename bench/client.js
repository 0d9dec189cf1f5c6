'use strict'

// The load client: one HTTP/2 client in a process of its own. It counts events (not bytes), checks that
// each stream gets its events in order with none lost, and reports over IPC.

const http2 = require('node:http2')

const options = JSON.parse(process.argv[2])
const origin = `http://127.0.0.1:${options.port}`
const WINDOW = 8 * 1024 * 1024

async function connect () {
  // A browser's windows (Chrome: 6 MiB a stream, 15 MiB a connection): the client must not be the limit.
  const session = http2.connect(origin, { settings: { initialWindowSize: WINDOW } })
  session.on('error', () => {})
  await new Promise((resolve, reject) => {
    session.once('connect', resolve)
    session.once('error', reject)
  })
  session.setLocalWindowSize(WINDOW * 2)
  return session
}

/**
 * Counts the events of one stream: blocks separated by a blank line that hold a data line. The first
 * number in the data is the event's sequence number: it must be the one expected next.
 */
class Counter {
  constructor (onEvent) {
    this.rest = ''
    this.events = 0
    this.disorder = 0
    this.onEvent = onEvent
  }

  feed (chunk) {
    const text = this.rest + chunk
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
      }
      start = end + 2
    }
    this.rest = text.slice(start)
  }
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

function ask (message) {
  return new Promise((resolve) => {
    process.once('message', resolve)
    process.send(message)
  })
}

async function sessions (count) {
  return await Promise.all(Array.from({ length: count }, connect))
}

async function openMany (list, total, path, onEvent) {
  const streams = []
  for (let i = 0; i < total; i++) streams.push(open(list[i % list.length], path, onEvent))
  await Promise.all(streams.map((s) => s.headers))
  return streams
}

const scenarios = {
  async pull ({ streams, connections, count, size }) {
    const list = await sessions(connections)
    const started = process.hrtime.bigint()
    const opened = await openMany(list, streams, `/pull?count=${count}&size=${size}`, () => {})
    await Promise.all(opened.map((s) => s.ended))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const events = opened.reduce((sum, s) => sum + s.counter.events, 0)
    const disorder = opened.reduce((sum, s) => sum + s.counter.disorder, 0)
    return { seconds, events, expected: streams * count, disorder, perSecond: events / seconds }
  },

  async fanout ({ subscribers, connections, count, size }) {
    const list = await sessions(connections)
    let delivered = 0
    let done
    const all = new Promise((resolve) => { done = resolve })
    const expected = subscribers * count
    const opened = await openMany(list, subscribers, '/sub', () => { if (++delivered === expected) done() })
    await ask({ ready: true })
    const started = process.hrtime.bigint()
    process.send({ go: true })
    const timeout = new Promise((resolve) => setTimeout(resolve, options.timeoutMs ?? 120_000))
    await Promise.race([all, timeout])
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const disorder = opened.reduce((sum, s) => sum + s.counter.disorder, 0)
    return { seconds, events: delivered, expected, disorder, perSecond: delivered / seconds }
  },

  async idle ({ streams, connections }) {
    const list = await sessions(connections)
    await ask({ baseline: true })
    const opened = await openMany(list, streams, '/idle', () => {})
    await ask({ measure: true })
    for (const s of opened) s.stream.close()
    return { streams: opened.length }
  },

  async churn ({ seconds, concurrency }) {
    await ask({ baseline: true })
    const until = Date.now() + seconds * 1000
    let done = 0
    const started = process.hrtime.bigint()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      // Node answers a connection that resets streams very fast with GOAWAY (the HTTP/2 "rapid reset"
      // mitigation): like many browsers, each worker uses a connection for a while, then a new one.
      let session
      for (let i = 0; Date.now() < until; i++) {
        if (i % 100 === 0) {
          session?.close()
          session = await connect()
        }
        const s = open(session, '/idle', () => {})
        await s.headers
        s.stream.close(http2.constants.NGHTTP2_CANCEL)
        await s.ended
        done++
      }
      session.close()
    }))
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9
    await ask({ measure: true })
    return { streams: done, perSecond: done / elapsed }
  }
}

scenarios[options.scenario](options).then(
  (result) => process.send({ result }),
  (error) => process.send({ error: String(error && error.stack) })
)
