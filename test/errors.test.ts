import { test } from 'tap'
import Fastify from 'fastify'
import sse, { errors, type FastifySseOptions } from '../index'
import { PROTOCOLS, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { ERROR, WARN } from './helpers/logs'

test('every plugin option is checked when the plugin registers', async (t) => {
  const bad: Array<[string, unknown]> = [
    ['heartbeatInterval', -1], ['heartbeatInterval', 1.5], ['heartbeatInterval', '15s'], ['heartbeatInterval', 2 ** 31],
    ['retry', -5], ['retry', 0.5], ['retry', '3000'],
    ['serializer', 'json'], ['serializer', null],
    ['lastEventIdQuery', ''], ['lastEventIdQuery', true], ['lastEventIdQuery', 1],
    ['maxBufferedBytes', 0], ['maxBufferedBytes', -1], ['maxBufferedBytes', Number.NaN], ['maxBufferedBytes', '1mb']
  ]
  for (const [name, value] of bad) {
    const app = Fastify()
    app.register(sse, { [name]: value } as FastifySseOptions)
    const error = await app.ready().then(() => undefined, (error: unknown) => error)
    t.ok(error instanceof errors.FST_SSE_INVALID_OPTION, `${name}: ${String(value)} is refused`)
    t.match(error, { code: 'FST_SSE_INVALID_OPTION', name: 'FastifyError', message: new RegExp(`option ${name} must be`) })
    await app.close()
  }
  const good: FastifySseOptions[] = [
    {}, { heartbeatInterval: 0 }, { heartbeatInterval: undefined }, { retry: 0 }, { serializer: String },
    { lastEventIdQuery: false }, { lastEventIdQuery: 'since' }, { maxBufferedBytes: 1 }
  ]
  for (const options of good) {
    const app = Fastify()
    await app.register(sse, options)
    await app.ready()
    t.pass(`${JSON.stringify(options)} is accepted`)
    await app.close()
  }
})

test('reply.sse() options are checked too', async (t) => {
  const server = await startServer(t, 'http1', (app) => {
    app.get('/bad-serializer', (request, reply) => reply.sse([], { serializer: 'json' as never }))
    app.get('/bad-retry', (request, reply) => reply.sse([], { retry: -1 }))
  })
  for (const path of ['/bad-serializer', '/bad-retry']) {
    const response = await server.app.inject(path)
    t.equal(response.statusCode, 500)
    t.equal(response.json().code, 'FST_SSE_INVALID_OPTION', path)
  }
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a source that cannot be streamed is a plain 500 before any SSE header`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/number', (request, reply) => reply.sse(42 as never))
      app.get('/object', (request, reply) => reply.sse({ data: 'x' } as never))
      app.get('/string', (request, reply) => reply.sse('hello' as never))
      app.get('/null', (request, reply) => reply.sse(null as never))
      app.get('/function-returning-number', (request, reply) => reply.sse((() => 7) as never))
      app.get('/function-throwing', (request, reply) => reply.sse(() => { throw new Error('no source today') }))
    })
    for (const path of ['/number', '/object', '/string', '/null', '/function-returning-number']) {
      const client = await openStream(t, server, path)
      await client.waitForEnd()
      t.equal(client.status, 500, path)
      t.match(client.headers['content-type'], /^application\/json/)
      t.match(JSON.parse(client.text), { code: 'FST_SSE_INVALID_SOURCE', message: /reply\.sse\(\) takes an iterable/ })
    }
    const thrown = await openStream(t, server, '/function-throwing')
    await thrown.waitForEnd()
    t.equal(thrown.status, 500)
    t.match(JSON.parse(thrown.text), { message: 'no source today' })
  })

  test(`${protocol}: a source that throws, rejects or yields a bad event is logged once with the request id; other streams go on`, async (t) => {
    const release = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/fails', (request, reply) => reply.sse(async function * () {
        yield 'before'
        throw new Error('the database went away')
      }))
      app.get('/bad-event', (request, reply) => reply.sse(async function * () {
        yield 'before'
        yield { id: 'forged\nevent: admin', data: 'x' }
        yield 'after'
      }))
      // The row itself where its event should be: `yield row` for `yield { data: row }`.
      app.get('/not-an-event', (request, reply) => reply.sse(async function * () {
        yield { data: 'before' }
        yield { id: 2, row: 'the row itself' }
        yield 'after'
      }))
      // Not a generator: an async iterator whose next() rejects, as a hand-written client library's may.
      app.get('/rejects', (request, reply) => reply.sse({
        [Symbol.asyncIterator]: () => ({ next: async () => await Promise.reject(new Error('the feed rejected')) })
      }))
      app.get('/steady', (request, reply) => reply.sse(async function * () {
        yield 'one'
        await release.promise
        yield 'two'
      }))
    })
    const steady = await openStream(t, server, '/steady')
    await steady.waitForEvents(1)

    const fails = await openStream(t, server, '/fails')
    await fails.waitForEnd()
    t.same(fails.events.map((event) => event.data), ['before'])
    const failure = await server.logs.waitFor((record) => record.err?.message === 'the database went away', 'the source error')
    t.equal(failure.level, ERROR)
    t.type(failure.reqId, 'string')
    t.match(failure.msg, /event source failed/)

    const bad = await openStream(t, server, '/bad-event')
    await bad.waitForEnd()
    t.same(bad.events.map((event) => event.data), ['before'], 'nothing of the bad event, nothing after it')
    t.notOk(bad.text.includes('admin'))
    const invalid = await server.logs.waitFor((record) => record.err?.code === 'FST_SSE_INVALID_ID', 'the invalid event')
    t.equal(invalid.level, ERROR)

    const notAnEvent = await openStream(t, server, '/not-an-event')
    await notAnEvent.waitForEnd()
    t.same(notAnEvent.events.map((event) => event.data), ['before'], 'nothing of an object that is not an event, nothing after it')
    const unknown = await server.logs.waitFor((record) => record.err?.code === 'FST_SSE_UNKNOWN_EVENT_FIELD', 'the unknown field')
    t.match(unknown, { level: ERROR, reqId: /./, err: { message: /no field 'row'/ } })

    const rejects = await openStream(t, server, '/rejects')
    await rejects.waitForEnd()
    const rejected = await server.logs.waitFor((record) => record.err?.message === 'the feed rejected', 'the rejection')
    t.match(rejected, { level: ERROR, reqId: /./ })

    release.resolve()
    await steady.waitForEnd()
    t.same(steady.events.map((event) => event.data), ['one', 'two'], 'the other stream was untouched')
    t.equal(server.logs.atLeast(WARN).length, 4, 'each failure was logged once, and nothing else')
  })
}

test('send() with an invalid event throws with a code, writes nothing, and the stream stays usable', async (t) => {
  const thrown = signalled<unknown>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => {
      const stream = reply.sse()
      try {
        stream.send({ event: 'a\nb', data: 'x' })
      } catch (error) {
        thrown.resolve(error)
      }
      stream.send('fine')
      stream.close()
    })
  })
  const client = await openStream(t, server, '/')
  await client.waitForEnd()
  const error = await within(thrown.promise, 'the throw')
  t.ok(error instanceof errors.FST_SSE_INVALID_EVENT_NAME)
  t.ok(error instanceof TypeError)
  t.same(client.events.map((event) => event.data), ['fine'])
})

test('a source whose cleanup fails is logged, sync or async, and the server goes on', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/sync', (request, reply) => reply.sse((function * () {
      try {
        while (true) yield 'x'.repeat(1024)
      } finally {
        // eslint-disable-next-line no-unsafe-finally -- the failing cleanup is the point
        throw new Error('sync cleanup failed')
      }
    })()))
  })
  const sync = await openStream(t, server, '/sync')
  await sync.waitForEvents(1)
  sync.pause()
  sync.close()
  const syncLog = await server.logs.waitFor((record) => record.err?.message === 'sync cleanup failed', 'the sync cleanup error')
  t.match(syncLog, { level: ERROR, msg: /while it was being ended/ })
  // An async generator parked at a yield (its client is behind) ends at once: its return() rejects.
  const parked = await startServer(t, 'http1', (app) => {
    app.get('/', (request, reply) => reply.sse((async function * () {
      try {
        while (true) yield 'y'.repeat(1024)
      } finally {
        // eslint-disable-next-line no-unsafe-finally -- the failing cleanup is the point
        throw new Error('async cleanup failed')
      }
    })()))
  })
  const client = await openStream(t, parked, '/')
  await client.waitForEvents(1)
  client.pause()
  client.close()
  const asyncLog = await parked.logs.waitFor((record) => record.err?.message === 'async cleanup failed', 'the async cleanup error')
  t.match(asyncLog, { level: ERROR, msg: /while it was being ended/ })
})
