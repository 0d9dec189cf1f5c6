import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import Fastify from 'fastify'
import { isHttp2, startServer, type Protocol } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { startFrozenClient } from './helpers/frozen-client'
import { signalled, waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { waitUntilSteady } from './helpers/resources'
import sse, { type EventStream } from '../index'

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
    const retries = clients.map((client) => client.retries)
    t.ok(retries.every((sent) => sent.length === 1 && sent[0] >= 1000 && sent[0] <= 10_000),
      'each was told, last thing, to reconnect after a delay of 1 to 10 s (shutdownRetry\'s default)')
    const delays = retries.map(([delay]) => delay)
    t.ok(Math.min(...delays) < 2000 && Math.max(...delays) > 9000,
      `drawn for each client, so that they come back spread over the window (${Math.min(...delays)} to ${Math.max(...delays)} ms)`)
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

for (const protocol of ['h2c', 'h2', 'http1'] as const) {
  for (const waiting of [false, true]) {
    test(`${protocol}: app.close() resolves with a frozen client holding a stream ${waiting ? 'with bytes waiting for it' : 'idle'}`, async (t) => {
      const handles: EventStream[] = []
      const server = await startServer(t, protocol, (app) => {
        app.get('/push', (request, reply) => {
          const stream = reply.sse()
          stream.send('open')
          handles.push(stream)
        })
      }, { plugin: { maxBufferedBytes: 64 * 1024 * 1024 } })
      const frozen = await startFrozenClient(t, server, '/push', 2)
      const live = await openStream(t, server, '/push')
      await live.waitForEvents(1)
      frozen.freeze()
      const frozenStreams = handles.slice(0, 2)
      if (waiting) {
        // Far more than the client's flow-control windows and the kernel's buffers can take.
        const chunk = 'x'.repeat(64 * 1024)
        for (const stream of frozenStreams) for (let i = 0; i < 256; i++) stream.send(chunk)
        t.ok(frozenStreams.every((stream) => stream.bufferedBytes > 8 * 1024 * 1024), 'MiBs wait for the frozen client')
      }

      const started = Date.now()
      await within(server.app.close(), 'app.close() with a frozen client', CLOSE_BOUND_MS)
      t.comment(`app.close() with a frozen ${protocol} client took ${Date.now() - started} ms`)
      t.ok(frozenStreams.every((stream) => (stream.signal.reason as { code: string }).code === 'FST_SSE_SERVER_CLOSING'),
        'the frozen client\'s streams were ended for the server closing')
      t.ok(frozenStreams.every((stream) => stream.bufferedBytes === 0), 'the server holds nothing for them')
      await live.waitForEnd()
      t.equal(live.retries.length, 1, 'the live client got its retry and its end')
      t.same(server.logs.atLeast(WARN), [])
    })
  }
}

for (const protocol of ['h2c', 'h2', 'http1'] as const) {
  for (const others of [false, true]) {
    test(`${protocol}: a request still in a preHandler when app.close() starts is refused with 503 and Retry-After${others ? ', with other streams open' : ''}`, async (t) => {
      const gate = signalled()
      const entered = new EventEmitter()
      let inPreHandler = 0
      let sourceCalls = 0
      const pending: EventStream[] = []
      const server = await startServer(t, protocol, (app) => {
        app.register(async (slow) => {
          slow.addHook('preHandler', async () => {
            inPreHandler++
            entered.emit('entered')
            await gate.promise
          })
          slow.get('/async-return', async (request, reply) => reply.sse())
          slow.get('/async-call', async (request, reply) => { pending.push(reply.sse()) })
          slow.get('/sync-return', (request, reply) => reply.sse())
          slow.get('/sync-call', (request, reply) => { pending.push(reply.sse()) })
          slow.get('/pull', (request, reply) => reply.sse(() => { sourceCalls++; return ['never'] }))
        })
        app.get('/open', (request, reply) => { reply.sse().send('open') })
        // Runs once the plugin's own preClose hook has begun, before the server stops.
        app.addHook('preClose', () => gate.resolve())
      })
      const open = others ? await openStream(t, server, '/open') : undefined
      await open?.waitForEvents(1)
      // Another connection than the open stream's (over HTTP/2, one session for all five).
      const session = isHttp2(protocol) ? await connectSession(t, server) : undefined
      const paths = ['/async-return', '/async-call', '/sync-return', '/sync-call', '/pull']
      // Clients that read status codes (curl's Accept): an EventSource's refusal is in test/refusals.test.ts.
      const refused = paths.map(async (path) => await openStream(t, server, path, { session, headers: { accept: '*/*' } }))
      await waitUntil(entered, 'entered', () => (inPreHandler === paths.length ? true : undefined), 'every request in its preHandler')

      const started = Date.now()
      await within(server.app.close(), 'app.close() with requests in a preHandler', CLOSE_BOUND_MS)
      t.comment(`app.close() took ${Date.now() - started} ms`)
      for (const [index, client] of (await Promise.all(refused)).entries()) {
        await client.waitForEnd()
        t.equal(client.status, 503, paths[index])
        t.ok(Number(client.headers['retry-after']) >= 1 && Number(client.headers['retry-after']) <= 10,
          `${paths[index]}: Retry-After ${String(client.headers['retry-after'])}, drawn from shutdownRetry`)
        t.match(JSON.parse(client.text), { statusCode: 503, code: 'FST_SSE_SERVER_CLOSING', error: 'Service Unavailable' })
        if (!isHttp2(protocol)) t.equal(client.headers.connection, 'close', 'and the connection closes')
      }
      t.equal(sourceCalls, 0, 'the source of a refused stream is never called')
      t.ok(pending.every((stream) => stream.closed), 'the handles are closed')
      if (open !== undefined) {
        await open.waitForEnd()
        t.equal(open.retries.length, 1, 'the open stream was ended, with its retry')
      }
      t.same(server.logs.atLeast(WARN).filter((record) => record.err?.code !== 'FST_SSE_SERVER_CLOSING'), [],
        'nothing logged but Fastify\'s error handler logging each 503, as it does every 5xx: no "Reply was already sent"')
    })
  }
}

test('shutdownRetry sets the window the retries are drawn from, and is checked when the plugin registers', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { reply.sse().send('open') })
  }, { plugin: { shutdownRetry: { min: 200, max: 250 } } })
  const clients = await Promise.all(Array.from({ length: 20 }, async () => await openStream(t, server, '/push')))
  await Promise.all(clients.map(async (client) => await client.waitForEvents(1)))
  await within(server.app.close(), 'app.close()')
  const delays = clients.map((client) => client.retries[0])
  t.ok(delays.every((delay) => delay >= 200 && delay <= 250), `every retry in the window (${delays.join(', ')})`)

  const bad: Array<[unknown, RegExp]> = [
    [null, /option shutdownRetry must be an object \{ min, max \}/],
    [{ min: 1000 }, /shutdownRetry\.max must be a whole number of milliseconds/],
    [{ min: -1, max: 10 }, /shutdownRetry\.min must be a whole number of milliseconds/],
    [{ min: 500, max: 100 }, /shutdownRetry\.max must be at least shutdownRetry\.min \(500\), got 100/]
  ]
  for (const [shutdownRetry, message] of bad) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(sse, { shutdownRetry } as never) }, { code: 'FST_SSE_INVALID_OPTION', message })
  }
})

for (const protocol of ['h2c', 'h2'] as const) {
  test(`${protocol}: app.close() does not wait for the idle session of a client whose stream was refused or closed`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/push', (request, reply) => { reply.sse().send('open') })
    }, { plugin: { limits: { maxStreams: 1 } } })
    const holder = await connectSession(t, server)
    const open = await openStream(t, server, '/push', { session: holder })
    await open.waitForEvents(1)
    const refusedSession = await connectSession(t, server)
    const refused = await openStream(t, server, '/push', { session: refusedSession, headers: { accept: '*/*' } })
    await refused.waitForEnd()
    t.equal(refused.status, 503)
    open.close()
    await open.waitForEnd()
    const goaway = within(once(refusedSession, 'goaway'), 'a GOAWAY')

    // Both sessions are idle now: Node 20 would keep them past server.close() for http2SessionTimeout (72 s).
    const started = Date.now()
    await within(server.app.close(), 'app.close() with idle sessions', CLOSE_BOUND_MS)
    t.comment(`app.close() with two idle ${protocol} sessions took ${Date.now() - started} ms`)
    await goaway
    t.pass('the client was told with a GOAWAY')
  })
}
