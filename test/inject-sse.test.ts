import { test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import sse, { type FastifySseOptions } from '../index'
import { injectSSE, InjectedStream, type InjectedEvent } from '../testing'
import { LogRecorder, WARN } from './helpers/logs'
import { signalled, within } from './helpers/wait'

interface Teardown { teardown: (fn: () => unknown) => void }

/** An app with the plugin that never listens: injectSSE() is all that speaks to it. */
async function makeApp (t: Teardown, routes: (app: FastifyInstance) => void, plugin: FastifySseOptions = {},
  fastify: FastifyServerOptions = {}): Promise<{ app: FastifyInstance, logs: LogRecorder }> {
  const logs = new LogRecorder()
  const app = Fastify({ logger: { level: 'debug', stream: logs }, ...fastify }) as unknown as FastifyInstance
  t.teardown(() => app.close())
  await app.register(sse, plugin)
  routes(app)
  return { app, logs }
}

/** The first `n` events of an iterator, within a bound. */
async function take (events: AsyncIterator<InjectedEvent>, n: number): Promise<InjectedEvent[]> {
  const taken: InjectedEvent[] = []
  while (taken.length < n) {
    const next = await within(events.next(), `event ${taken.length + 1} of ${n}`)
    if (next.done === true) break
    taken.push(next.value)
  }
  return taken
}

/** An endless source of ticks, one a millisecond, that says when its finally ran. */
function ticking (finished: () => void) {
  return async function * ({ signal }: { signal: AbortSignal }) {
    try {
      for (let n = 0; ; n++) {
        yield { id: String(n), event: 'tick', data: `tick ${n}` }
        await sleep(1, undefined, { signal })
      }
    } finally {
      finished()
    }
  }
}

test('an endless route of an app that is only ready(): status, headers and events as a client parses them', async (t) => {
  const { app, logs } = await makeApp(t, (app) => {
    app.get('/ticks', (request, reply) => reply.sse(ticking(() => {})))
  }, { retry: 2500 })
  await app.ready()
  t.notOk(app.server.listening, 'the app does not listen')
  const events = await injectSSE(app, { url: '/ticks' })
  t.equal(events.status, 200)
  t.ok(events instanceof InjectedStream, 'an InjectedStream, as fastify-sse-h2/testing exports it')
  t.equal(events.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(events.body, undefined, 'an event stream has no body to read in full')
  t.same(await take(events, 3), [
    { id: '0', event: 'tick', data: 'tick 0' },
    { id: '1', event: 'tick', data: 'tick 1' },
    { id: '2', event: 'tick', data: 'tick 2' }
  ])
  t.equal(events.retry, 2500, 'the retry: line the stream sent')
  await events.close()
  t.same(logs.atLeast(WARN), [])
})

test('close() ends the route\'s source: its finally runs and its signal aborts with FST_SSE_CLIENT_CLOSED', async (t) => {
  const finished = signalled()
  const reasons: unknown[] = []
  const { app } = await makeApp(t, (app) => {
    app.get('/ticks', (request, reply) => {
      const stream = reply.sse(ticking(finished.resolve))
      stream.signal.addEventListener('abort', () => reasons.push((stream.signal.reason as { code: string }).code))
    })
  })
  const events = await injectSSE(app, { url: '/ticks' })
  await take(events, 1)
  await events.close()
  await within(finished.promise, 'the source\'s finally')
  t.same(reasons, ['FST_SSE_CLIENT_CLOSED'])
  t.same(await events.next(), { done: true, value: undefined }, 'the iterator ends')
  await events.close()
  t.pass('closing twice is harmless')
})

test('a next() still waiting when the stream is closed ends the iteration', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/quiet', (request, reply) => { reply.sse() })
  })
  const events = await injectSSE(app, { url: '/quiet' })
  const waiting = events.next()
  await events.close()
  t.same(await within(waiting, 'the waiting next()'), { done: true, value: undefined })
})

test('leaving a for await early closes the stream, as a client going away', async (t) => {
  const finished = signalled()
  const { app } = await makeApp(t, (app) => {
    app.get('/ticks', (request, reply) => reply.sse(ticking(finished.resolve)))
  })
  const seen: string[] = []
  for await (const event of await injectSSE(app, { url: '/ticks' })) {
    seen.push(event.data)
    if (seen.length === 2) break
  }
  t.same(seen, ['tick 0', 'tick 1'])
  await within(finished.promise, 'the source\'s finally')
  t.equal(app.sse.stats().streams.closed.FST_SSE_CLIENT_CLOSED, 1, 'the stream closed as by its client')
})

test('a stream the server ends ends the iteration, after its last event; a data with several lines stays whole', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/three', (request, reply) => reply.sse(['one', { data: 'two\nlines' }, { id: '', data: 'reset id' }]))
  })
  const received: InjectedEvent[] = []
  for await (const event of await injectSSE(app, { url: '/three' })) received.push(event)
  t.same(received, [{ data: 'one' }, { data: 'two\nlines' }, { id: '', data: 'reset id' }])
})

test('lastEventId is sent as Last-Event-ID: a channel subscriber gets what it missed, then live events', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  })
  await app.ready()
  const news = app.sse.channel('news')
  const first = await news.publish({ data: 'first' })
  await news.publish({ data: 'second' })
  const events = await injectSSE(app, { url: '/news', lastEventId: first })
  await news.publish({ data: 'third' })
  t.same((await take(events, 2)).map((event) => event.data), ['second', 'third'])
  const fresh = await injectSSE(app, { url: '/news', lastEventId: 'never-sent' })
  t.same((await take(fresh, 1)).map((event) => event.event), ['missed'], 'an id not retained: missed first')
  await Promise.all([events.close(), fresh.close()])
})

test('method, headers and payload reach the route; accept: text/event-stream is sent unless given', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.post('/search', (request, reply) => reply.sse([
      { event: 'query', data: JSON.stringify(request.body) },
      { event: 'accept', data: String(request.headers.accept) },
      { event: 'tenant', data: String(request.headers['x-tenant']) }
    ]))
  })
  const received: InjectedEvent[] = []
  for await (const event of await injectSSE(app, {
    url: '/search', method: 'POST', payload: { q: 'fastify' }, headers: { 'x-tenant': 'acme' }
  })) received.push(event)
  t.same(received, [
    { event: 'query', data: '{"q":"fastify"}' },
    { event: 'accept', data: 'text/event-stream' },
    { event: 'tenant', data: 'acme' }
  ])
  const asked = await injectSSE(app, { url: '/search', method: 'POST', payload: {}, headers: { accept: '*/*' } })
  t.same((await take(asked, 2))[1], { event: 'accept', data: '*/*' })
})

test('an answer that is not an event stream: its status, headers and body, and no events', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/private', {
      onRequest: async (request, reply) => { await reply.code(401).send({ error: 'Unauthorized' }) }
    }, (request, reply) => reply.sse(['never']))
  })
  const refused = await injectSSE(app, { url: '/private' })
  t.equal(refused.status, 401)
  t.match(refused.headers['content-type'], /^application\/json/)
  t.same(JSON.parse(refused.body as string), { error: 'Unauthorized' })
  t.same(await refused.next(), { done: true, value: undefined })
  const missing = await injectSSE(app, { url: '/nowhere' })
  t.equal(missing.status, 404)
})

test('a refusal past limits is a 503 with its code in the body', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/ticks', (request, reply) => reply.sse(ticking(() => {})))
  }, { limits: { maxStreams: 1, retryAfter: 7 } })
  const open = await injectSSE(app, { url: '/ticks' })
  // As a client that reads status codes asks (curl's Accept); EventSource's Accept gets the refusal it survives.
  const refused = await injectSSE(app, { url: '/ticks', headers: { accept: '*/*' } })
  t.equal(refused.status, 503)
  t.equal(refused.headers['retry-after'], '7')
  t.match(JSON.parse(refused.body as string), { code: 'FST_SSE_TOO_MANY_STREAMS' })
  await open.close()
})

for (const encoding of ['gzip', 'br']) {
  test(`a compressed stream (${encoding}) is read uncompressed`, async (t) => {
    const { app } = await makeApp(t, (app) => {
      app.get('/ticks', (request, reply) => reply.sse(ticking(() => {})))
    }, { compression: true })
    const events = await injectSSE(app, { url: '/ticks', headers: { 'accept-encoding': encoding } })
    t.equal(events.headers['content-encoding'], encoding)
    t.same((await take(events, 2)).map((event) => event.data), ['tick 0', 'tick 1'])
    await events.close()
    t.same(await events.next(), { done: true, value: undefined }, 'closed while compressed: the iterator ends')
  })
}

test('an app that is not ready yet: inject makes it ready', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/one', (request, reply) => reply.sse(['one']))
  })
  const events = await injectSSE(app, { url: '/one' })
  t.same(await take(events, 2), [{ data: 'one' }])
})

test('an HTTP/2 app is asked as any app is: inject speaks HTTP/1.1 to it', async (t) => {
  const { app } = await makeApp(t, (app) => {
    app.get('/one', (request, reply) => reply.sse(['one']))
  }, {}, { http2: true } as FastifyServerOptions)
  const events = await injectSSE(app, { url: '/one' })
  t.same(await take(events, 2), [{ data: 'one' }])
  t.equal(app.sse.stats().streams.byProtocol.http1.opened, 1)
})

test('app.close() with injected streams open: they end, the iteration ends, and the app closes', async (t) => {
  const finished = signalled()
  const { app, logs } = await makeApp(t, (app) => {
    app.get('/ticks', (request, reply) => reply.sse(ticking(finished.resolve)))
  }, { shutdownRetry: { min: 2000, max: 2000 } })
  const events = await injectSSE(app, { url: '/ticks' })
  await take(events, 1)
  await within(app.close(), 'app.close()', 2000)
  await within(finished.promise, 'the source\'s finally')
  const rest: InjectedEvent[] = []
  for await (const event of events) rest.push(event)
  t.ok(rest.every((event) => event.event === 'tick'), 'what was sent before the close, then the end')
  t.equal(events.retry, 2000, 'the retry: of the shutdown came before the end')
  t.same(logs.atLeast(WARN), [])
})
