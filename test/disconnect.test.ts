import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import http2, { type ServerHttp2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { PROTOCOLS, isHttp2, startServer, type Protocol, type TestServer } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { signalled, waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { watchProcess } from './helpers/process-problems'
import {
  Reachable, activeResources, listenerCounts, startClock, trackTimers, waitUntilSteady
} from './helpers/resources'
import { StreamGroup } from '../lib/stream/stream-group'
import type { EventStream } from '../index'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

// The server must notice a client gone from the connection's own events: the other ways it could (a heartbeat
// that fails, after 15 s by default; writeTimeout, after 30 s) are far slower than this bound.
const PROMPTLY_MS = 2000
const HTTP2: Protocol[] = ['h2c', 'h2']

function codeOf (signal: AbortSignal): string | undefined {
  return signal.aborted ? (signal.reason as { code?: string }).code : undefined
}

async function abortOf (signal: AbortSignal, what: string, timeoutMs = PROMPTLY_MS): Promise<void> {
  await within(new Promise<void>((resolve) => {
    if (signal.aborted) resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
  }), what, timeoutMs)
}

interface Writable {
  write: (...args: unknown[]) => boolean
}

/** Counts what is written to the HTTP/2 stream or HTTP/1.1 response of `stream` once it is closed. */
function countWritesAfterClose (raw: object, stream: EventStream): { count: number } {
  const target = ('stream' in raw ? raw.stream : raw) as Writable
  const write = target.write.bind(target)
  const writes = { count: 0 }
  target.write = (...args) => {
    if (stream.closed) writes.count++
    return write(...args)
  }
  return writes
}

/** Routes whose sources wait for a message from `hub`, with the signal, and report how they ended. */
function waitingRoutes (hub: EventEmitter, ends: string[], ended: EventEmitter) {
  return (app: FastifyInstance): void => {
    app.get('/wait', (request, reply) => reply.sse(async function * ({ signal }) {
      try {
        yield 'open'
        while (true) {
          const [message] = await once(hub, 'message', { signal })
          yield String(message)
        }
      } finally {
        ends.push(codeOf(signal) ?? 'not aborted')
        ended.emit('end')
      }
    }))
  }
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a client that goes away aborts the push handle's signal; send() then writes nothing`, async (t) => {
    const problems = watchProcess(t)
    const handles: EventStream[] = []
    const writes: Array<{ count: number }> = []
    const server = await startServer(t, protocol, (app) => {
      app.get('/push', (request, reply) => {
        const stream = reply.sse()
        writes.push(countWritesAfterClose(reply.raw, stream))
        handles.push(stream)
      })
    })
    const clock = await startClock(t)
    // Over HTTP/2 both streams are on one connection.
    const session = isHttp2(protocol) ? await connectSession(t, server) : undefined
    const gone = await openStream(t, server, '/push', { session })
    const survivor = await openStream(t, server, '/push', { session })
    const [goneStream, survivorStream] = handles
    goneStream.send('hello')
    await gone.waitForEvents(1)

    gone.close()
    await abortOf(goneStream.signal, 'the signal to abort')
    t.equal(codeOf(goneStream.signal), 'FST_SSE_CLIENT_CLOSED')
    t.equal(goneStream.closed, true)
    t.equal(goneStream.send('anyone?'), false, 'send() says false, and throws nothing')
    t.equal(goneStream.comment('anyone?'), false, 'so does comment()')
    t.equal(goneStream.bufferedBytes, 0)
    await clock.waitForComments(clock.comments.length + 3)
    t.equal(writes[0].count, 0, 'three heartbeat intervals later, nothing was written to the closed stream')

    survivorStream.send('still here')
    await survivor.waitForEvents(1)
    t.equal(survivor.events[0].data, 'still here', 'the other stream goes on')
    t.same(problems, [], 'no unhandled rejection or exception')
    t.same(server.logs.atLeast(WARN), [], 'nothing logged as a warning or an error')
  })

  test(`${protocol}: a client that goes away ends a source waiting on it: its finally runs at once`, async (t) => {
    const problems = watchProcess(t)
    const clock = await startClock(t)
    const hub = new EventEmitter()
    let pulled = 0
    const blockedEnd = signalled<string | undefined>()
    const waitingEnd = signalled<string | undefined>()
    const chunk = 'x'.repeat(16 * 1024)
    const server = await startServer(t, protocol, (app) => {
      // Paused at a yield while the plugin waits for the client to take what was written.
      app.get('/blocked', (request, reply) => reply.sse(async function * ({ signal }) {
        try {
          for (let i = 0; ; i++) {
            pulled++
            yield { id: String(i), data: chunk }
          }
        } finally {
          blockedEnd.resolve(codeOf(signal))
        }
      }))
      // Waiting for a message, with the signal given to what it waits on.
      app.get('/waiting', (request, reply) => reply.sse(async function * ({ signal }) {
        try {
          yield 'open'
          const [message] = await once(hub, 'message', { signal })
          yield String(message)
        } finally {
          waitingEnd.resolve(codeOf(signal))
        }
      }))
    })
    const blocked = await openStream(t, server, '/blocked')
    blocked.pause()
    const settled = await waitUntilSteady(clock, () => pulled, 3, 'the number of events pulled')
    t.ok(settled > 1, `the source is paused after ${settled} events`)
    blocked.close()
    t.equal(await within(blockedEnd.promise, 'the finally of a source paused by backpressure', PROMPTLY_MS),
      'FST_SSE_CLIENT_CLOSED', 'the finally of a source paused at a yield ran, its signal aborted')
    t.equal(pulled, settled, 'and it was not pulled again')

    const waiting = await openStream(t, server, '/waiting')
    await waiting.waitForEvents(1)
    waiting.close()
    t.equal(await within(waitingEnd.promise, 'the finally of a source waiting on its signal', PROMPTLY_MS),
      'FST_SSE_CLIENT_CLOSED', 'the finally of a source waiting for a message ran, its signal aborted')
    t.equal(hub.listenerCount('message'), 0, 'it let go of what it waited on')

    t.same(problems, [], 'no unhandled rejection or exception')
    t.same(server.logs.atLeast(WARN), [], 'nothing logged as a warning or an error')
  })

  test(`${protocol}: close() from the server ends the client's stream and aborts the signal`, async (t) => {
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { handle.resolve(reply.sse()) })
    })
    const client = await openStream(t, server, '/')
    const stream = await within(handle.promise, 'the handle')
    const abort = abortOf(stream.signal, 'the signal to abort')
    stream.send('bye')
    await client.waitForEvents(1)
    stream.close()
    await client.waitForEnd()
    await abort
    t.equal(codeOf(stream.signal), 'FST_SSE_STREAM_ENDED')
    t.same(client.events.map((event) => event.data), ['bye'])
    t.equal(stream.send('more'), false, 'send() after close() says false')
    t.same(server.logs.atLeast(WARN), [])
  })
}

for (const protocol of HTTP2) {
  test(`${protocol}: a session destroyed with several streams open ends each one; other sessions go on`, async (t) => {
    const problems = watchProcess(t)
    const hub = new EventEmitter()
    const ends: string[] = []
    const ended = new EventEmitter()
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      waitingRoutes(hub, ends, ended)(app)
      app.get('/push', (request, reply) => { handle.resolve(reply.sse()) })
    })
    const doomed = await connectSession(t, server)
    const other = await connectSession(t, server)
    const doomedClients = await Promise.all([1, 2, 3].map(() => openStream(t, server, '/wait', { session: doomed })))
    await openStream(t, server, '/push', { session: doomed })
    const pushed = await within(handle.promise, 'the push handle')
    const survivor = await openStream(t, server, '/wait', { session: other })
    await Promise.all([...doomedClients, survivor].map(async (client) => await client.waitForEvents(1)))

    doomed.destroy()
    await waitUntil(ended, 'end', () => (ends.length >= 3 ? true : undefined), 'three sources to end', PROMPTLY_MS)
    t.same(ends, ['FST_SSE_CLIENT_CLOSED', 'FST_SSE_CLIENT_CLOSED', 'FST_SSE_CLIENT_CLOSED'],
      'each source on the session ended, its signal aborted')
    await abortOf(pushed.signal, 'the push handle\'s signal')
    t.equal(codeOf(pushed.signal), 'FST_SSE_CLIENT_CLOSED')
    hub.emit('message', 'news')
    await survivor.waitForEvents(2)
    t.equal(survivor.events[1].data, 'news', 'the stream on the other session goes on')
    t.equal(ends.length, 3)
    t.same(problems, [])
    t.same(server.logs.atLeast(WARN), [])
  })

  test(`${protocol}: a client's GOAWAY (session.close()) ends no stream; the client's RST_STREAMs then do`,
    async (t) => {
      const problems = watchProcess(t)
      const hub = new EventEmitter()
      const ends: string[] = []
      const ended = new EventEmitter()
      const server = await startServer(t, protocol, waitingRoutes(hub, ends, ended))
      const serverSessions: ServerHttp2Session[] = []
      server.app.server.on('session', (session: ServerHttp2Session) => serverSessions.push(session))
      const session = await connectSession(t, server)
      const clients = await Promise.all([1, 2, 3].map(() => openStream(t, server, '/wait', { session })))
      await Promise.all(clients.map(async (client) => await client.waitForEvents(1)))

      const goaway = within(once(serverSessions[0], 'goaway'), 'the server to receive the GOAWAY')
      session.close()
      await goaway
      // A GOAWAY only says the client opens no new stream: those open may run to their end.
      hub.emit('message', 'after the GOAWAY')
      await Promise.all(clients.map(async (client) => await client.waitForEvents(2)))
      t.ok(clients.every((client) => client.events[1].data === 'after the GOAWAY'), 'the streams still deliver')
      t.same(ends, [], 'no source ended')

      const sessionClosed = within(once(session, 'close'), 'the session to close with its last stream')
      for (const client of clients) client.close()
      await waitUntil(ended, 'end', () => (ends.length >= 3 ? true : undefined), 'three sources to end', PROMPTLY_MS)
      t.same(ends, ['FST_SSE_CLIENT_CLOSED', 'FST_SSE_CLIENT_CLOSED', 'FST_SSE_CLIENT_CLOSED'])
      await sessionClosed
      t.same(problems, [])
      t.same(server.logs.atLeast(WARN), [])
    })
}

/**
 * The plugin's registries of open streams (what the heartbeat and shutdown walk), caught as streams are added,
 * and read as they are: by how many streams they hold.
 */
function watchRegistries (t: Teardown): () => number {
  const registries = new Set<StreamGroup>()
  const add = StreamGroup.prototype.add
  StreamGroup.prototype.add = function (stream: EventStream) {
    registries.add(this)
    add.call(this, stream)
  }
  t.teardown(() => { StreamGroup.prototype.add = add })
  return () => [...registries].reduce((sum, registry) =>
    sum + (registry as unknown as { streams: Set<EventStream> }).streams.size, 0)
}

const churns: Array<{ protocol: Protocol, count: number, sessions: number }> = [
  { protocol: 'h2c', count: 3000, sessions: 4 },
  { protocol: 'h2', count: 1000, sessions: 2 },
  { protocol: 'http1', count: 1000, sessions: 0 }
]

for (const { protocol, count, sessions: sessionCount } of churns) {
  test(`${protocol}: ${count} streams opened and dropped leave nothing behind`, async (t) => {
    const registered = watchRegistries(t)
    const timers = trackTimers(t)
    const streams = new Reachable<EventStream>()
    const finallies = new EventEmitter()
    let ended = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/stream', (request, reply) => {
        streams.add(reply.sse(async function * ({ signal }) {
          try {
            yield 'open'
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
          } finally {
            ended++
            finallies.emit('finally')
          }
        }))
      })
    }, { logLevel: 'warn' })
    const allEnded = async (n: number): Promise<unknown> =>
      await waitUntil(finallies, 'finally', () => (ended >= n ? true : undefined), `${n} sources to end`, 30_000)

    // The server's side of every connection: its sessions' listeners, and when its sockets close.
    const serverSessions: ServerHttp2Session[] = []
    server.app.server.on('session', (session: ServerHttp2Session) => serverSessions.push(session))
    const sockets = new EventEmitter()
    let openSockets = 0
    server.app.server.on('connection', (socket: Socket) => {
      openSockets++
      socket.once('close', () => {
        openSockets--
        sockets.emit('close')
      })
    })
    const socketsClosed = async (): Promise<unknown> =>
      await waitUntil(sockets, 'close', () => (openSockets === 0 ? true : undefined), 'the server\'s sockets to close')
    const sessions = await Promise.all(Array.from({ length: sessionCount }, async () => await connectSession(t, server)))

    // One stream first, so that what is made once (sessions' state, caches) is in the baseline.
    const warm = await openStream(t, server, '/stream', { session: sessions[0] })
    await warm.waitForEvents(1)
    warm.close()
    await allEnded(1)
    if (!isHttp2(protocol)) await socketsClosed()
    const baseline = {
      resources: activeResources(),
      timers: await timers(),
      server: listenerCounts(server.app.server),
      sessions: serverSessions.map(listenerCounts)
    }

    const batch = 100
    for (let opened = 0; opened < count; opened += batch) {
      const clients: SseClient[] = await Promise.all(Array.from({ length: batch }, async (_, i) =>
        await openStream(t, server, '/stream', { session: sessions[i % Math.max(1, sessionCount)] })))
      await Promise.all(clients.map(async (client) => await client.waitForEvents(1)))
      if (opened === 0) t.equal(registered(), batch, `the plugin holds the ${batch} streams open`)
      for (const client of clients) client.close()
    }
    await allEnded(count + 1)
    t.equal(ended, count + 1, 'every source\'s finally ran')
    if (!isHttp2(protocol)) await socketsClosed()

    t.equal(registered(), 0, 'the plugin holds no open stream')
    t.same(activeResources(), baseline.resources, 'the same handles are open as before')
    t.equal(await timers(), baseline.timers, 'the same timers are alive as before')
    t.same(listenerCounts(server.app.server), baseline.server, 'the server has the same listeners as before')
    t.same(serverSessions.map(listenerCounts), baseline.sessions, 'so have its sessions')
    t.equal(await streams.count(), 0, `not one of ${streams.tracked} streams is still reachable after a collection`)
  })
}

/** Starts a request without waiting for its response headers, and returns how to drop it. */
function requestWithoutWaiting (t: Teardown, server: TestServer): { close: () => void } {
  if (isHttp2(server.protocol)) {
    const session = http2.connect(server.origin, { ca: server.ca })
    t.teardown(() => session.destroy())
    session.on('error', () => {})
    const request = session.request({ ':path': '/' })
    request.on('error', () => {})
    return { close: () => request.close(http2.constants.NGHTTP2_CANCEL) }
  }
  const transport = server.protocol === 'http1-tls' ? https : http
  const request = transport.request(`${server.origin}/`, { agent: false, ca: server.ca })
  request.on('error', () => {})
  request.end()
  return { close: () => request.destroy() }
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a client gone before reply.sse() is called gets nothing, and its source is not pulled`, async (t) => {
    const arrived = signalled()
    const handle = signalled<EventStream>()
    let pulled = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/', async (request, reply) => {
        arrived.resolve()
        // Slow authentication: the client gives up meanwhile.
        await new Promise((resolve) => request.raw.once('close', resolve))
        const stream = reply.sse((function * () {
          pulled++
          yield 'x'
        })())
        handle.resolve(stream)
        return stream
      })
    })
    const client = requestWithoutWaiting(t, server)
    await within(arrived.promise, 'the request to reach the handler')
    client.close()
    const stream = await within(handle.promise, 'the handle')
    t.equal(stream.closed, true)
    t.equal(codeOf(stream.signal), 'FST_SSE_CLIENT_CLOSED')
    t.equal(stream.send('anyone?'), false)
    t.equal(pulled, 0, 'the source was never pulled')
    t.same(server.logs.atLeast(WARN), [])
  })
}
