'use strict'

// The servers under test, each started the way its documentation shows, all serving the same three routes:
//   GET /pull?count=N&size=S  a stream of N events of S bytes of data, made lazily, as fast as the client takes them
//   GET /sub                  a subscriber of the fan-out; `publish(count, size, json, first)` sends events first to
//                             first + count - 1 (first: 0 unless given) to every subscriber
//   GET /idle                 an open stream that sends nothing but heartbeats (when they are on)
// and raw, fastify-floor and fastify-sse-h2 (with and without an event schema) two more, whose event data is an object, `quote(i)`:
//   GET /pull-json?count=N    as /pull
//   GET /sub-json             as /sub; `publish(count, size, true)` sends to these subscribers
// Every event's data starts with its sequence number, so the client can check order and loss. Each target is started
// with `{ heartbeatInterval }` (ms, 0: off), and raw, fastify-floor and fastify-sse-h2 with `http1: true` serve
// HTTP/1.1 instead of h2c (bench/capacity.js); fastify-sse-h2 takes Fastify's `pluginTimeout` too (app.close() of
// 100,000 streams can take longer than its default 10 s). fastify-sse-h2 serves a page of 10 channels too
// (bench/cost.js channels):
//   GET /page                 one stream of the 10 channels (its ids are cursors); `publishPages(count, first)`
//   GET /page/:i              a stream of channel i alone

const http = require('node:http')
const http2 = require('node:http2')
const { once } = require('node:events')

/** The data of event `i`: its number, padded to `size` bytes. */
function payload (i, size) {
  return String(i).padEnd(size, '.')
}

/** The data of event `i` of the JSON scenarios: an object of five fields, about 70 bytes as JSON. */
function quote (i) {
  return { seq: i, symbol: 'ACME', price: 100 + (i % 1000) / 100, volume: i * 3, open: true }
}

// The schema of quote(i): what fastify-sse-h2 serializes with fast-json-stringify, and JSON.stringify otherwise.
const Quote = {
  type: 'object',
  properties: { seq: { type: 'integer' }, symbol: { type: 'string' }, price: { type: 'number' }, volume: { type: 'integer' }, open: { type: 'boolean' } },
  required: ['seq', 'symbol', 'price', 'volume', 'open']
}

const PAGE_CHANNELS = 10

function query (url) {
  const params = new URL(url, 'http://x').searchParams
  return { count: Number(params.get('count')), size: Number(params.get('size')) }
}

async function * events (count, size) {
  for (let i = 0; i < count; i++) yield { id: String(i), data: payload(i, size) }
}

async function * quotes (count) {
  for (let i = 0; i < count; i++) yield { id: String(i), data: quote(i) }
}

async function listenFastify (app) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return app.server.address().port
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }

/**
 * The streams of a hand-written server, written to as node:http2 allows: `respond()`, one `stream.write()` per
 * preformatted frame (waiting for 'drain' when it says so), one `setInterval` for every stream's heartbeat. Shared
 * by `raw` and `fastify-floor`, which differ only in who hands them the stream. An HTTP/1.1 response (`http1`, the
 * capacity bench) is written the same way.
 */
function handWritten ({ heartbeatInterval }, { batch = false } = {}) {
  const subscribers = new Set()
  const idle = new Set()
  let timer
  let heartbeats = 0
  if (heartbeatInterval > 0) {
    timer = setInterval(() => {
      for (const stream of idle) stream.write(':\n\n')
      for (const stream of subscribers) stream.write(':\n\n')
      heartbeats += idle.size + subscribers.size
    }, heartbeatInterval)
  }
  return {
    serve (stream, path) {
      stream.on('error', () => {})
      if (typeof stream.respond === 'function') {
        stream.respond({ ':status': 200, ...SSE_HEADERS })
      } else {
        stream.writeHead(200, SSE_HEADERS)
        stream.flushHeaders()
      }
      if (path.startsWith('/pull')) {
        const { count, size } = query(path)
        const json = path.startsWith('/pull-json')
        // The app's source, as every target is handed it: the same async generator, pulled with `for await`.
        ;(async () => {
          for await (const event of json ? quotes(count) : events(count, size)) {
            if (stream.destroyed) break
            const data = json ? JSON.stringify(event.data) : event.data
            if (!stream.write('id: ' + event.id + '\ndata: ' + data + '\n\n')) await once(stream, 'drain')
          }
          stream.end()
        })().catch(() => {})
      } else {
        const set = path === '/sub' || path === '/sub-json' ? subscribers : idle
        set.add(stream)
        stream.on('close', () => set.delete(stream))
      }
    },
    subscribers: () => subscribers.size,
    heartbeats: () => heartbeats,
    publish: async (count, size, json, first = 0) => {
      const frameOf = (i) => 'id: ' + i + '\ndata: ' + (json ? JSON.stringify(quote(i)) : payload(i, size)) + '\n\n'
      if (batch) {
        // The whole burst framed once, as one Buffer, written to each subscriber once: the least work there is.
        let text = ''
        for (let i = first; i < first + count; i++) text += frameOf(i)
        const burst = Buffer.from(text)
        for (const stream of subscribers) stream.write(burst)
        return
      }
      for (let i = first; i < first + count; i++) {
        const frame = Buffer.from(frameOf(i))
        for (const stream of subscribers) stream.write(frame)
      }
    },
    close () {
      clearInterval(timer)
      for (const stream of [...subscribers, ...idle]) {
        if (typeof stream.close === 'function') stream.close()
        else stream.end()
      }
    }
  }
}

/**
 * A hand-written node:http2 server: the ceiling of a loop that writes frame by frame. With `batch` (`raw-batch`), a
 * fan-out's burst goes to each subscriber as one preformatted Buffer: the limit of the fan-out scenarios, what no
 * server can beat by more than its own bookkeeping.
 */
async function raw (options, { batch = false } = {}) {
  const streams = handWritten(options, { batch })
  const server = options.http1
    ? http.createServer((request, response) => streams.serve(response, request.url))
    : http2.createServer().on('stream', (stream, headers) => streams.serve(stream, headers[':path']))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: server.address().port,
    subscribers: streams.subscribers,
    heartbeats: streams.heartbeats,
    publish: streams.publish,
    close: async () => {
      streams.close()
      server.close()
    }
  }
}

/**
 * A bare Fastify route that hijacks the reply and writes the raw HTTP/2 stream as `raw` does: the floor of any
 * Fastify plugin (Fastify's request, reply and routing, and Node's compatibility layer under them, for every stream).
 */
async function fastifyFloor (options) {
  const Fastify = require('fastify')
  const streams = handWritten(options)
  const app = Fastify({ http2: !options.http1 })
  app.get('/*', (request, reply) => {
    reply.hijack()
    streams.serve(reply.raw.stream ?? reply.raw, request.url)
  })
  return {
    port: await listenFastify(app),
    subscribers: streams.subscribers,
    heartbeats: streams.heartbeats,
    publish: streams.publish,
    close: async () => {
      streams.close()
      await app.close()
    }
  }
}

/**
 * fastify-sse-h2, this repository, as built in dist/. With `schema`, the JSON routes and their channel declare the
 * schema of their data (serialized by fast-json-stringify); without, the plugin's JSON.stringify serializes it.
 */
async function ours ({ heartbeatInterval, http1 = false, pluginTimeout }, { schema = false } = {}) {
  const Fastify = require('fastify')
  // FASTIFY_SSE_H2_BUILD=DIR loads another build (a copy of dist/), to compare two (bench/cost.js).
  const sse = require(process.env.FASTIFY_SSE_H2_BUILD ? require('node:path').resolve(process.env.FASTIFY_SSE_H2_BUILD) : '..')
  const app = Fastify({ http2: !http1, ...(pluginTimeout === undefined ? {} : { pluginTimeout }) })
  await app.register(sse, { heartbeatInterval })
  const channel = app.sse.channel('bench')
  const quoteChannel = app.sse.channel('quotes', schema ? { schema: Quote } : undefined)
  const json = schema ? { schema: { response: { 200: { content: { 'text/event-stream': { schema: Quote } } } } } } : {}
  app.get('/pull', (request, reply) => reply.sse(events(Number(request.query.count), Number(request.query.size))))
  app.get('/pull-json', json, (request, reply) => reply.sse(quotes(Number(request.query.count))))
  app.get('/sub', (request, reply) => reply.sse(channel))
  app.get('/sub-json', json, (request, reply) => reply.sse(quoteChannel))
  app.get('/idle', (request, reply) => { reply.sse() })
  // A page's feed of PAGE_CHANNELS channels, as one stream of them all or as a stream each (bench/cost.js channels).
  const pageChannels = Array.from({ length: PAGE_CHANNELS }, (_, i) => app.sse.channel(`page-${i}`))
  app.get('/page', (request, reply) => reply.sse(pageChannels))
  app.get('/page/:i', (request, reply) => reply.sse(pageChannels[Number(request.params.i)]))
  return {
    port: await listenFastify(app),
    subscribers: () => channel.subscribers + quoteChannel.subscribers +
      pageChannels.reduce((sum, each) => sum + each.subscribers, 0),
    // Heartbeats written, while nothing else is: each is a comment of 3 bytes.
    heartbeats: () => app.sse.stats().bytes.sent / 3,
    // With the events' own ids, as every other target writes them: the store's would be positions, 16 digits here.
    publish: async (count, size, isJson, first = 0) => {
      const published = []
      for (let i = first; i < first + count; i++) {
        const id = String(i)
        published.push(isJson ? quoteChannel.publish({ id, data: quote(i) }) : channel.publish({ id, data: payload(i, size) }))
      }
      await Promise.all(published)
    },
    // Events i of every page channel, channel after channel for each i; their ids are the store's (or cursors).
    publishPages: async (count, first = 0) => {
      const published = []
      for (let i = first; i < first + count; i++) {
        for (let c = 0; c < PAGE_CHANNELS; c++) published.push(pageChannels[c].publish({ data: `${i} ${c} `.padEnd(64, '.') }))
      }
      await Promise.all(published)
    },
    close: () => app.close()
  }
}

/**
 * @fastify/sse: routes opt in with { sse: ... }; one heartbeat timer per stream. Fan-out as its README writes every
 * send, `await reply.sse.send(message)`, in turn for each subscriber: a send that finds the stream's buffer full
 * waits for 'drain' with two listeners of its own, so sends not awaited pile up listeners by the hundred on every
 * stream (MaxListenersExceededWarning), each 'drain' then costing as many removals: several times slower.
 */
async function fastifySse ({ heartbeatInterval }) {
  const Fastify = require('fastify')
  const app = Fastify({ http2: true })
  await app.register(require('@fastify/sse'), heartbeatInterval > 0 ? { heartbeatInterval } : {})
  // Its heartbeat is turned off per route.
  const sse = heartbeatInterval > 0 ? true : { heartbeat: false }
  const subscribers = new Set()
  app.get('/pull', { sse }, async (request, reply) => {
    await reply.sse.send(events(Number(request.query.count), Number(request.query.size)))
  })
  const keep = (set) => async (request, reply) => {
    reply.sse.keepAlive()
    reply.sse.sendHeaders()
    set.add(reply)
    reply.sse.onClose(() => set.delete(reply))
  }
  app.get('/sub', { sse }, keep(subscribers))
  app.get('/idle', { sse }, keep(new Set()))
  return {
    port: await listenFastify(app),
    subscribers: () => subscribers.size,
    publish: async (count, size, json, first = 0) => {
      const messages = Array.from({ length: count }, (_, i) => ({ id: String(first + i), data: payload(first + i, size) }))
      await Promise.all(Array.from(subscribers, async (reply) => {
        for (const message of messages) await reply.sse.send(message)
      }))
    },
    close: () => app.close()
  }
}

/** fastify-sse-v2: reply.sse(asyncIterable) to pull; reply.sse(event) to push. No heartbeat. */
async function fastifySseV2 () {
  const Fastify = require('fastify')
  const { FastifySSEPlugin } = require('fastify-sse-v2')
  const app = Fastify({ http2: true })
  await app.register(FastifySSEPlugin, { retryDelay: false })
  const subscribers = new Set()
  app.get('/pull', (request, reply) => {
    reply.sse(events(Number(request.query.count), Number(request.query.size)))
  })
  const keep = (set) => (request, reply) => {
    // Its first reply.sse() call sends the headers; a retry field is no event.
    reply.sse({ retry: 3000 })
    set.add(reply)
    request.raw.on('close', () => set.delete(reply))
  }
  app.get('/sub', keep(subscribers))
  app.get('/idle', keep(new Set()))
  return {
    port: await listenFastify(app),
    subscribers: () => subscribers.size,
    publish: async (count, size, json, first = 0) => {
      for (let i = first; i < first + count; i++) {
        const message = { id: String(i), data: payload(i, size) }
        for (const reply of subscribers) reply.sse(message)
      }
    },
    close: () => app.close()
  }
}

/**
 * better-sse: framework-free sessions on node:http2's compatibility API, registered with a channel. Events published
 * together go as its batching guide shows for many events to every session of a channel: written once into an event
 * buffer (`createEventBuffer()`), handed to each session with `session.batch(buffer)`, one write a session.
 * `channel.broadcast()` event by event formats and writes every event for every session, about 20x slower here.
 */
async function betterSse ({ heartbeatInterval }) {
  const { createSession, createChannel, createEventBuffer } = require('better-sse')
  const channel = createChannel()
  const options = { keepAlive: heartbeatInterval > 0 ? heartbeatInterval : null, retry: null }
  const server = http2.createServer(async (req, res) => {
    const session = await createSession(req, res, options)
    if (req.url.startsWith('/pull')) {
      const { count, size } = query(req.url)
      await session.iterate(events(count, size), { eventName: 'message' })
      res.end()
    } else if (req.url === '/sub') {
      channel.register(session)
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: server.address().port,
    subscribers: () => channel.sessionCount,
    publish: async (count, size, json, first = 0) => {
      const buffer = createEventBuffer()
      for (let i = first; i < first + count; i++) buffer.push(payload(i, size), 'message', String(i))
      for (const session of channel.activeSessions) session.batch(buffer)
    },
    close: async () => { server.close() }
  }
}

module.exports = {
  PAGE_CHANNELS,
  payload,
  quote,
  targets: {
    raw,
    'raw-batch': (options) => raw(options, { batch: true }),
    'fastify-floor': fastifyFloor,
    'fastify-sse-h2': ours,
    'fastify-sse-h2+schema': (options) => ours(options, { schema: true }),
    '@fastify/sse': fastifySse,
    'fastify-sse-v2': fastifySseV2,
    'better-sse': betterSse
  }
}
