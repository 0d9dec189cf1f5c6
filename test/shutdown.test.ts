import { test } from 'tap'
import { EventEmitter } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { startServer, type Protocol } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { waitUntilSteady } from './helpers/resources'
import type { EventStream } from '../index'

// Generous: app.close() must not wait for streams that never end by themselves, nor on a timer per stream.
const CLOSE_BOUND_MS = 10_000

interface Tally {
  /** Why each pulled source's signal aborted, as its finally saw it. */
  ends: string[]
  pushed: EventStream[]
  events: EventEmitter
}

function routes (tally: Tally) {
  return (app: FastifyInstance): void => {
    app.get('/pull', (request, reply) => reply.sse(async function * ({ signal }) {
      try {
        yield 'open'
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      } finally {
        tally.ends.push((signal.reason as { code?: string } | undefined)?.code ?? 'not aborted')
        tally.events.emit('end')
      }
    }))
    app.get('/push', (request, reply) => {
      const stream = reply.sse()
      stream.send('open')
      tally.pushed.push(stream)
    })
  }
}

const codes = (list: string[]): string[] => [...new Set(list)]

const loads: Array<{ protocol: Protocol, count: number, sessions: number }> = [
  { protocol: 'h2c', count: 2000, sessions: 8 },
  { protocol: 'h2', count: 300, sessions: 2 },
  { protocol: 'http1', count: 1000, sessions: 0 }
]

for (const { protocol, count, sessions: sessionCount } of loads) {
  test(`${protocol}: app.close() with ${count} streams open ends them all and resolves`, async (t) => {
    const tally: Tally = { ends: [], pushed: [], events: new EventEmitter() }
    const server = await startServer(t, protocol, routes(tally), { logLevel: 'warn' })
    const sessions = await Promise.all(Array.from({ length: sessionCount }, async () => await connectSession(t, server)))
    const clients: SseClient[] = []
    for (let opened = 0; opened < count; opened += 100) {
      clients.push(...await Promise.all(Array.from({ length: 100 }, async (_, i) =>
        await openStream(t, server, i % 2 === 0 ? '/pull' : '/push',
          { session: sessionCount > 0 ? sessions[(opened + i) % sessionCount] : undefined }))))
    }
    await Promise.all(clients.map(async (client) => await client.waitForEvents(1)))

    const started = Date.now()
    await within(server.app.close(), 'app.close()', CLOSE_BOUND_MS)
    t.comment(`app.close() with ${count} ${protocol} streams open took ${Date.now() - started} ms`)
    await waitUntil(tally.events, 'end', () => (tally.ends.length === count / 2 ? true : undefined),
      'every pulled source to end')
    t.equal(tally.ends.length, count / 2, 'every pulled source\'s finally ran')
    t.same(codes(tally.ends), ['FST_SSE_SERVER_CLOSING'], 'with its signal aborted for the server closing')
    t.same(codes(tally.pushed.map((stream) => (stream.signal.reason as { code: string }).code)),
      ['FST_SSE_SERVER_CLOSING'], 'every push handle\'s signal aborted for the server closing')
    await Promise.all(clients.map(async (client) => await client.waitForEnd()))
    t.pass('every client saw its stream end')
    t.same(server.logs.atLeast(WARN), [])
  })
}

for (const protocol of ['h2c', 'http1'] as const) {
  test(`${protocol}: app.close() resolves with a client that never reads and a lot waiting for it`, async (t) => {
    const tally: Tally = { ends: [], pushed: [], events: new EventEmitter() }
    const server = await startServer(t, protocol, (app) => {
      routes(tally)(app)
      app.get('/clock', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 40, maxBufferedBytes: 64 * 1024 * 1024 } })
    const stuck = await openStream(t, server, '/push')
    await stuck.waitForEvents(1)
    stuck.pause()
    const [stream] = tally.pushed
    const clock = await openStream(t, server, '/clock')
    // Keep 2 MiB waiting in the server for as long as the buffers on the way (the kernel's, over HTTP/1.1) take more.
    const chunk = 'x'.repeat(16 * 1024)
    let sent = 0
    const topUp = (): void => {
      if (stream.closed) return
      while (stream.bufferedBytes < 2 * 1024 * 1024) {
        stream.send(chunk)
        sent++
      }
      setImmediate(topUp)
    }
    topUp()
    await waitUntilSteady(clock, () => sent, 3, 'the number of events sent')
    t.ok(stream.bufferedBytes >= 2 * 1024 * 1024, `${stream.bufferedBytes} bytes wait for the client`)
    const reading = await openStream(t, server, '/pull')
    await reading.waitForEvents(1)

    const started = Date.now()
    await within(server.app.close(), 'app.close() with a client that never reads', CLOSE_BOUND_MS)
    t.comment(`app.close() with a client that never reads took ${Date.now() - started} ms`)
    t.equal((stream.signal.reason as { code: string }).code, 'FST_SSE_SERVER_CLOSING')
    t.same(tally.ends, ['FST_SSE_SERVER_CLOSING'], 'the other stream\'s source ended')
    await reading.waitForEnd()
    stuck.resume()
    await stuck.waitForEnd()
    t.pass('the client that never read sees its stream end when it reads again')
    t.equal(stream.bufferedBytes, 0, 'the server holds nothing for it')
  })
}
