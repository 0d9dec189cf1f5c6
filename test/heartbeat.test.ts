import { test } from 'tap'
import { join, sep } from 'node:path'
import { once } from 'node:events'
import { PROTOCOLS, isHttp2, startServer, type Protocol } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a silent stream gets comment lines`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 50 } })
    const client = await openStream(t, server, '/')
    await client.waitForComments(3)
    t.same(client.comments.slice(0, 3), ['', '', ''])
    t.equal(client.events.length, 0, 'a heartbeat is no event')
    t.match(client.text, /^(:\n\n)+$/)
  })
}

test('a stream that writes more often than the interval gets no heartbeat', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/busy', (request, reply) => reply.sse(async function * ({ signal }) {
      for (let i = 0; i < 40; i++) {
        yield String(i)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }))
    app.get('/quiet', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 100 } })
  const quiet = await openStream(t, server, '/quiet')
  const busy = await openStream(t, server, '/busy')
  await busy.waitForEnd()
  t.equal(busy.events.length, 40)
  t.ok(quiet.comments.length >= 2, `the quiet stream got heartbeats meanwhile (${quiet.comments.length})`)
  t.equal(busy.comments.length, 0)
})

test('heartbeatInterval: 0 sends none', async (t) => {
  const late = signalled()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(async function * () {
      await late.promise
      yield 'late'
    }))
    app.get('/clock', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 0 } })
  const client = await openStream(t, server, '/')
  // A second server with heartbeats shows the time that passed: 5 intervals of 40 ms.
  const clock = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 40 } })
  await (await openStream(t, clock, '/')).waitForComments(5)
  late.resolve()
  await client.waitForEnd()
  t.same(client.comments, [])
  t.same(client.events.map((event) => event.data), ['late'])
})

const pluginLib = join(__dirname, '..', 'lib') + sep

function fromPlugin (): boolean {
  return new Error().stack?.includes(pluginLib) === true
}

test('one timer serves every stream, and it stops when none is open', async (t) => {
  const created: string[] = []
  const realSetInterval = globalThis.setInterval
  const realSetTimeout = globalThis.setTimeout
  const spy = (kind: string, real: (...args: never[]) => unknown) => (...args: never[]) => {
    if (fromPlugin()) created.push(kind)
    return real(...args)
  }
  globalThis.setInterval = spy('setInterval', realSetInterval as never) as never
  globalThis.setTimeout = spy('setTimeout', realSetTimeout as never) as never
  t.teardown(() => {
    globalThis.setInterval = realSetInterval
    globalThis.setTimeout = realSetTimeout
  })
  const stopped = signalled()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 40 } })
  const realClearInterval = globalThis.clearInterval
  globalThis.clearInterval = ((timer?: NodeJS.Timeout) => {
    if (timer !== undefined && fromPlugin()) stopped.resolve()
    realClearInterval(timer)
  }) as typeof clearInterval
  t.teardown(() => { globalThis.clearInterval = realClearInterval })
  const session = await connectSession(t, server)
  const clients = await Promise.all(Array.from({ length: 200 }, () => openStream(t, server, '/', { session })))
  await Promise.all(clients.map((client) => client.waitForComments(2)))
  t.same(created, ['setInterval'], '200 streams, one interval, no timeout')
  for (const client of clients) client.close()
  await within(stopped.promise, 'the timer to stop')
  t.pass('the interval was cleared when the last stream closed')
})

const idleTimeouts: Record<Protocol, Record<string, number>> = {
  h2c: { http2SessionTimeout: 300 },
  h2: { http2SessionTimeout: 300 },
  'http1-tls': { connectionTimeout: 300, keepAliveTimeout: 200 },
  http1: { connectionTimeout: 300, keepAliveTimeout: 200 }
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: heartbeats keep a stream open past the server's idle timeout`, async (t) => {
    const push = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', async (request, reply) => {
        const stream = reply.sse()
        await push.promise
        stream.send('still here')
      })
    }, { plugin: { heartbeatInterval: 80 }, fastify: idleTimeouts[protocol] })
    const session = isHttp2(protocol) ? await connectSession(t, server) : undefined
    let goaway = false
    session?.on('goaway', () => { goaway = true })
    const client = await openStream(t, server, '/', { session })
    const started = Date.now()
    // 15 heartbeats of at most 80 ms: well past three idle timeouts of 300 ms.
    await client.waitForComments(15)
    t.ok(Date.now() - started > 900, 'longer than three idle timeouts went by')
    t.equal(client.ended, false)
    if (session !== undefined) t.equal(goaway, false, 'the session never timed out')
    push.resolve()
    await client.waitForEvents(1)
    t.equal(client.events[0].data, 'still here')
  })

  test(`${protocol}: without heartbeats the same idle timeout strikes`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 0 }, fastify: idleTimeouts[protocol] })
    if (isHttp2(protocol)) {
      // Fastify closes an idle session with GOAWAY (an open stream may finish, no new one may start).
      const session = await connectSession(t, server)
      await openStream(t, server, '/', { session })
      await within(once(session, 'goaway'), 'the idle session to be closed')
      t.pass('the session timed out')
    } else {
      const client = await openStream(t, server, '/')
      await client.waitForEnd()
      t.ok(client.ended, 'the idle socket was closed, and the stream with it')
    }
  })
}

test('a client that is behind gets no heartbeat piled on top', async (t) => {
  const handle = signalled<{ bufferedBytes: number }>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/stuck', (request, reply) => {
      const stream = reply.sse()
      const chunk = 'x'.repeat(1024)
      // More than the client's flow-control windows (64 KiB each for the stream and the session) can take.
      for (let i = 0; i < 512; i++) stream.send(chunk)
      handle.resolve(stream)
    })
    app.get('/clock', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 40, maxBufferedBytes: 10 * 1024 * 1024 } })
  const stuck = await openStream(t, server, '/stuck')
  stuck.pause()
  const stream = await within(handle.promise, 'the stuck stream')
  const clock = await openStream(t, server, '/clock')
  await clock.waitForComments(2)
  const before = stream.bufferedBytes
  await clock.waitForComments(8)
  t.ok(before > 0, `data is waiting for the client (${before} bytes)`)
  t.equal(stream.bufferedBytes, before, 'six heartbeat intervals later, not one byte more waits')
  stuck.resume()
  await stuck.waitForEvents(10)
})

test('a stream the server ended gets no heartbeat while its client keeps the request open', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(['only']))
    app.get('/clock', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 20 } })
  const session = await connectSession(t, server)
  // The client does not end its side of the stream: the server's stream stays open after the response ends.
  const request = session.request({ ':path': '/' }, { endStream: false })
  let text = ''
  request.setEncoding('utf8')
  request.on('data', (chunk: string) => { text += chunk })
  await within(once(request, 'end'), 'the end of the response')
  const clock = await openStream(t, server, '/clock', { session })
  await clock.waitForComments(10)
  t.equal(text, 'data: only\n\n', 'ten heartbeat intervals later, nothing was written after the end')
  t.same(server.logs.atLeast(40), [])
})
