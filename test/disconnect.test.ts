import { test } from 'tap'
import http2 from 'node:http2'
import type { FastifyInstance } from 'fastify'
import http from 'node:http'
import https from 'node:https'
import { PROTOCOLS, isHttp2, startServer, type TestServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, within, waitUntil } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream } from '../index'
import { EventEmitter } from 'node:events'

/** Starts a request without waiting for its response headers, and returns how to drop it. */
function openStreamWithoutHeaders (t: { teardown: (fn: () => void) => void }, server: TestServer): { close: () => void } {
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

function watchProcess (t: { teardown: (fn: () => void) => void }): unknown[] {
  const problems: unknown[] = []
  const record = (error: unknown): void => { problems.push(error) }
  process.on('unhandledRejection', record)
  process.on('uncaughtException', record)
  t.teardown(() => {
    process.removeListener('unhandledRejection', record)
    process.removeListener('uncaughtException', record)
  })
  return problems
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a client that goes away aborts the signal and ends the source at once`, async (t) => {
    const problems = watchProcess(t)
    const pushed = signalled<EventStream>()
    const waitingFinally = signalled()
    const blockedFinally = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/push', (request, reply) => {
        const stream = reply.sse()
        stream.send('hello')
        pushed.resolve(stream)
      })
      // Waits on something that listens to the signal.
      app.get('/waiting', (request, reply) => reply.sse(async function * ({ signal }) {
        try {
          yield 'hello'
          await new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
        } finally {
          waitingFinally.resolve()
        }
      }))
      // Suspended at a yield because the client is behind.
      app.get('/blocked', (request, reply) => reply.sse(function * () {
        try {
          while (true) yield 'x'.repeat(4096)
        } finally {
          blockedFinally.resolve()
        }
      }))
    })
    const push = await openStream(t, server, '/push')
    await push.waitForEvents(1)
    const stream = await pushed.promise
    push.close()
    await within(new Promise((resolve) => stream.signal.addEventListener('abort', resolve)), 'the abort')
    t.match(stream.signal.reason, { code: 'FST_SSE_CLIENT_CLOSED' })
    t.equal(stream.closed, true)
    t.equal(stream.send('anyone?'), false, 'send() after the client left says so, and throws nothing')
    t.equal(stream.bufferedBytes, 0)

    const waiting = await openStream(t, server, '/waiting')
    await waiting.waitForEvents(1)
    waiting.close()
    await within(waitingFinally.promise, 'the finally of a source waiting on its signal')

    const blocked = await openStream(t, server, '/blocked')
    await blocked.waitForEvents(1)
    blocked.pause()
    blocked.close()
    await within(blockedFinally.promise, 'the finally of a source paused by backpressure')

    t.same(problems, [], 'no unhandled rejection or exception')
    t.same(server.logs.atLeast(WARN), [], 'nothing logged as a warning or an error')
  })
}

function streamRoutes (finallies: EventEmitter) {
  return (app: FastifyInstance): void => {
    app.get('/stream', (request, reply) => reply.sse(async function * ({ signal }) {
      try {
        yield 'open'
        while (!signal.aborted) {
          yield 'tick'
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      } finally {
        finallies.emit('finally')
      }
    }))
  }
}

for (const how of ['RST_STREAM', 'session destroyed', 'GOAWAY then destroyed'] as const) {
  test(`HTTP/2 ${how}: the streams gone end, the others on the connection go on`, async (t) => {
    const problems = watchProcess(t)
    const finallies = new EventEmitter()
    let ended = 0
    finallies.on('finally', () => { ended++ })
    const server = await startServer(t, 'h2c', streamRoutes(finallies))
    const doomed = await connectSession(t, server)
    const other = await connectSession(t, server)
    const doomedClients = await Promise.all([1, 2, 3].map(() => openStream(t, server, '/stream', { session: doomed })))
    const survivor = await openStream(t, server, '/stream', { session: how === 'RST_STREAM' ? doomed : other })
    await Promise.all([...doomedClients, survivor].map((client) => client.waitForEvents(2)))
    if (how === 'RST_STREAM') for (const client of doomedClients) client.close()
    else if (how === 'session destroyed') doomed.destroy()
    else {
      // A client's GOAWAY only says it opens no new stream: the open ones go on until the session goes.
      doomed.goaway(http2.constants.NGHTTP2_NO_ERROR)
      await Promise.all(doomedClients.map((client) => client.waitForEvents(client.events.length + 2)))
      t.equal(ended, 0, 'GOAWAY alone ends no stream')
      doomed.destroy()
    }
    await waitUntil(finallies, 'finally', () => (ended >= 3 ? true : undefined), 'three sources to end')
    const seen = survivor.events.length
    await survivor.waitForEvents(seen + 3)
    t.equal(survivor.ended, false, 'the other stream goes on receiving')
    t.equal(ended, 3)
    t.same(problems, [])
    t.same(server.logs.atLeast(WARN), [])
  })
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: close() from the server ends the client's stream`, async (t) => {
    const closed = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        const stream = reply.sse()
        stream.send('bye')
        stream.close()
        closed.resolve(stream)
      })
    })
    const client = await openStream(t, server, '/')
    await client.waitForEnd()
    const stream = await closed.promise
    t.same(client.events.map((event) => event.data), ['bye'])
    t.match(stream.signal.reason, { code: 'FST_SSE_STREAM_ENDED' })
  })
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: thousands of streams opened and dropped leave nothing behind`, async (t) => {
    const finallies = new EventEmitter()
    let ended = 0
    finallies.on('finally', () => { ended++ })
    const server = await startServer(t, protocol, streamRoutes(finallies), { logLevel: 'warn' })
    const count = isHttp2(protocol) ? 2000 : 500
    const sessions = isHttp2(protocol) ? await Promise.all([1, 2, 3, 4].map(() => connectSession(t, server))) : []
    // Immediates are callbacks queued for the next turn of the loop (TLS teardown queues some), not resources held.
    const held = (): string[] => process.getActiveResourcesInfo().filter((resource) => resource !== 'Immediate')
    const handles = (): number => held().length
    const listeners = (): number => server.app.server.listenerCount('request') + server.app.server.listenerCount('stream') +
      server.app.server.listenerCount('session') + server.app.server.listenerCount('connection')
    const baselineListeners = listeners()
    // Server-side sockets, to wait until every HTTP/1.1 connection the clients dropped is closed here too.
    const sockets = new EventEmitter()
    let openSockets = 0
    server.app.server.on('connection', (socket: NodeJS.EventEmitter) => {
      openSockets++
      socket.once('close', () => { openSockets--; sockets.emit('change') })
    })
    const socketsClosed = async (): Promise<unknown> =>
      await waitUntil(sockets, 'change', () => (openSockets === 0 ? true : undefined), 'the server sockets to close', 30_000)
    // One stream first, so that lazily made things (sockets, timers) are in the baseline.
    const warm = await openStream(t, server, '/stream', { session: sessions[0] })
    await warm.waitForEvents(1)
    warm.close()
    await waitUntil(finallies, 'finally', () => (ended >= 1 ? true : undefined), 'the warm-up stream to end')
    if (!isHttp2(protocol)) await Promise.all([socketsClosed(), warm.waitForSocketClose()])
    const baselineHandles = handles()
    const batch = 100
    for (let opened = 0; opened < count; opened += batch) {
      const clients = await Promise.all(Array.from({ length: batch }, (_, i) =>
        openStream(t, server, '/stream', { session: sessions[(opened + i) % Math.max(1, sessions.length)] })))
      await Promise.all(clients.map((client) => client.waitForEvents(1)))
      for (const client of clients) client.close()
      if (!isHttp2(protocol)) await Promise.all(clients.map((client) => client.waitForSocketClose()))
    }
    await waitUntil(finallies, 'finally', () => (ended >= count + 1 ? true : undefined), `${count} sources to end`, 30_000)
    t.equal(ended, count + 1, 'every source ended')
    if (!isHttp2(protocol)) await socketsClosed()
    t.equal(listeners(), baselineListeners + 1, 'no listener left on the server but the test\'s own')
    for (const session of sessions) {
      t.equal(session.listenerCount('stream'), 0)
    }
    t.equal(handles(), baselineHandles, `open handles back to ${baselineHandles}: ${held().join(', ')}`)
  })
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a client gone before reply.sse() is called gets nothing, and its source is not pulled`, async (t) => {
    const arrived = signalled()
    const left = signalled()
    const handle = signalled<EventStream>()
    let pulled = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/', async (request, reply) => {
        arrived.resolve()
        // Slow authentication: the client gives up meanwhile.
        await new Promise((resolve) => request.raw.once('close', resolve))
        left.resolve()
        const stream = reply.sse((function * () { pulled++; yield 'x' })())
        handle.resolve(stream)
        return stream
      })
    })
    const client = openStreamWithoutHeaders(t, server)
    await within(arrived.promise, 'the request to reach the handler')
    client.close()
    await within(left.promise, 'the server to see the client leave')
    const stream = await within(handle.promise, 'the handle')
    t.equal(stream.closed, true)
    t.match(stream.signal.reason, { code: 'FST_SSE_CLIENT_CLOSED' })
    t.equal(stream.send('anyone?'), false)
    t.equal(pulled, 0)
    t.same(server.logs.atLeast(WARN), [])
  })
}
