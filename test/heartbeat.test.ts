import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { PROTOCOLS, isHttp2, startServer, type Protocol } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { trackTimers, waitUntilSteady } from './helpers/resources'
import type { EventStream } from '../index'

const nextTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a silent stream gets comment lines`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 100 } })
    const client = await openStream(t, server, '/')
    await client.waitForComments(3)
    t.same(client.comments.slice(0, 3), ['', '', ''], 'an empty comment each time')
    t.equal(client.events.length, 0, 'a heartbeat is no event')
    t.match(client.text, /^(:\n\n)+$/, 'the frame is a bare colon and a blank line')
  })
}

test('a stream that writes more often than the interval gets no heartbeat', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/busy', (request, reply) => reply.sse(async function * () {
      for (let i = 0; i < 30; i++) {
        yield String(i)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }))
    app.get('/quiet', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 100 } })
  const quiet = await openStream(t, server, '/quiet')
  const busy = await openStream(t, server, '/busy')
  await busy.waitForEnd()
  t.equal(busy.events.length, 30)
  // The control: heartbeats were due meanwhile, and went to the stream that needed them.
  t.ok(quiet.comments.length >= 3, `the quiet stream got heartbeats meanwhile (${quiet.comments.length})`)
  t.equal(busy.comments.length, 0, 'the busy stream got none')
})

test('heartbeatInterval: 0 sends none', async (t) => {
  const late = signalled()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => reply.sse(async function * () {
      await late.promise
      yield 'late'
    }))
  }, { plugin: { heartbeatInterval: 0 } })
  const client = await openStream(t, server, '/')
  // Another server, with heartbeats, shows the time that went by: ten intervals of 40 ms.
  const clock = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 40 } })
  await (await openStream(t, clock, '/')).waitForComments(10)
  late.resolve()
  await client.waitForEnd()
  t.same(client.events.map((event) => event.data), ['late'])
  t.same(client.comments, [], 'no comment in all that time (over HTTP/2 its headers need none to go with)')
})

test('one timer serves every open stream, and it stops when none is open', async (t) => {
  const timers = trackTimers(t)
  const aborts = new EventEmitter()
  let aborted = 0
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => {
      reply.sse().signal.addEventListener('abort', () => {
        aborted++
        aborts.emit('abort')
      })
    })
  }, { plugin: { heartbeatInterval: 40 } })
  const session = await connectSession(t, server)
  const before = await timers()
  // The count must see a timer that does not keep the process running, as the heartbeat's does not.
  const probe = setInterval(() => {}, 1000).unref()
  t.equal(await timers(), before + 1, 'an unref\'d interval is counted')
  clearInterval(probe)
  t.equal(await timers(), before, 'and uncounted once cleared')

  const clients = await Promise.all(Array.from({ length: 200 }, () => openStream(t, server, '/', { session })))
  await Promise.all(clients.map((client) => client.waitForComments(2)))
  t.equal(await timers() - before, 1, 'every one of 200 streams got heartbeats, from one timer')
  for (const client of clients) client.close()
  await waitUntil(aborts, 'abort', () => (aborted === 200 ? true : undefined), 'the server to see 200 streams close')
  t.equal(await timers(), before, 'the timer stopped with the last stream')

  const again = await openStream(t, server, '/', { session })
  await again.waitForComments(1)
  t.equal(await timers() - before, 1, 'and starts again with the next one')
})

const IDLE_MS = 300
const idleTimeouts: Record<Protocol, Record<string, number>> = {
  h2c: { http2SessionTimeout: IDLE_MS },
  h2: { http2SessionTimeout: IDLE_MS },
  'http1-tls': { connectionTimeout: IDLE_MS, keepAliveTimeout: 200 },
  http1: { connectionTimeout: IDLE_MS, keepAliveTimeout: 200 }
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: heartbeats keep a stream open past the server's idle timeout`, async (t) => {
    const push = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        const stream = reply.sse()
        push.promise.then(() => stream.send('still here'), () => {})
      })
      app.get('/other', (request, reply) => reply.sse(['hello']))
    }, { plugin: { heartbeatInterval: 100 }, fastify: idleTimeouts[protocol] })
    const session = isHttp2(protocol) ? await connectSession(t, server) : undefined
    let goaway = false
    session?.on('goaway', () => { goaway = true })
    const client = await openStream(t, server, '/', { session })
    const started = Date.now()
    // Heartbeats are the only traffic: take them until three idle timeouts have gone by.
    while (Date.now() - started <= 3 * IDLE_MS) await client.waitForComments(client.comments.length + 1)
    t.equal(client.ended, false, `still open after ${client.comments.length} heartbeats`)
    if (session !== undefined) {
      t.equal(goaway, false, 'the session was never closed for being idle')
      const other = await openStream(t, server, '/other', { session })
      await other.waitForEnd()
      t.same(other.events.map((event) => event.data), ['hello'], 'the connection still takes new streams')
    }
    push.resolve()
    await client.waitForEvents(1)
    t.equal(client.events[0].data, 'still here')
  })

  test(`${protocol}: without heartbeats the same idle timeout strikes`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 0 }, fastify: idleTimeouts[protocol] })
    if (isHttp2(protocol)) {
      const session = await connectSession(t, server)
      await openStream(t, server, '/', { session })
      // Fastify closes an idle session gracefully: GOAWAY, so no new stream may start on the connection (Node's
      // session.close() lets the open ones run on, a proxy's idle timeout would cut them).
      await within(once(session, 'goaway'), 'the idle session to be closed')
      t.throws(() => session.request({ ':path': '/' }), { code: 'ERR_HTTP2_GOAWAY_SESSION' },
        'the connection takes no new stream')
    } else {
      const client = await openStream(t, server, '/')
      await client.waitForEnd()
      t.equal(client.socketClosed, true, 'the idle socket was closed, and the stream with it')
    }
  })
}

for (const protocol of ['h2c', 'h2', 'http1'] as const) {
  test(`${protocol}: a stream whose client is behind gets no heartbeat piled on top`, async (t) => {
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/stuck', (request, reply) => { handle.resolve(reply.sse()) })
      app.get('/clock', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 40 } })
    const stuck = await openStream(t, server, '/stuck')
    stuck.pause()
    const stream = await within(handle.promise, 'the stuck stream')
    const clock = await openStream(t, server, '/clock')
    // A sender that heeds backpressure and never runs out: it waits whenever send() says the client is behind.
    let sent = 0
    const stop = new AbortController()
    const sender = (async () => {
      const chunk = 'x'.repeat(1024)
      while (!stop.signal.aborted && !stream.closed) {
        if (!stream.send({ id: String(sent++), data: chunk })) await stream.drained()
        await nextTurn()
      }
    })()
    await waitUntilSteady(clock, () => sent, 3, 'the number of events sent')
    const before = stream.bufferedBytes
    t.ok(before > 0, `data waits for the client (${before} bytes)`)
    const beats = clock.comments.length
    await clock.waitForComments(beats + 6)
    t.ok(stream.bufferedBytes <= before, `six heartbeat intervals later, no byte more waits (${stream.bufferedBytes})`)
    stop.abort()
    stuck.resume()
    await within(sender, 'the sender to stop')
    await stuck.waitForEvents(sent)
    t.ok(stuck.events.every((event, i) => event.id === String(i)), `all ${sent} events, in order`)
    const lastEvent = stuck.text.lastIndexOf('id: ')
    t.notOk(stuck.text.slice(stuck.text.indexOf('id: '), lastEvent).includes(':\n\n'), 'not one comment among them')
  })
}

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
  t.same(server.logs.atLeast(WARN), [])
})
