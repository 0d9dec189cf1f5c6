import { test } from 'tap'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { PROTOCOLS, isHttp2, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream } from '../index'

function * three (): Generator<string> {
  yield 'one'
  yield 'two'
  yield 'three'
}

function pushThree (reply: FastifyReply): EventStream {
  const stream = reply.sse()
  for (const data of three()) stream.send(data)
  stream.close()
  return stream
}

function routes (app: FastifyInstance): void {
  app.get('/async-return', async (request, reply) => reply.sse(three()))
  app.get('/async-call', async (request, reply) => { reply.sse(three()) })
  app.get('/sync-return', (request, reply) => reply.sse(three()))
  app.get('/sync-call', (request, reply) => { reply.sse(three()) })
  app.get('/push-async-return', async (request, reply) => pushThree(reply))
  app.get('/push-async-call', async (request, reply) => { pushThree(reply) })
  app.get('/push-sync-return', (request, reply) => pushThree(reply))
  app.get('/push-sync-call', (request, reply) => { pushThree(reply) })
  app.get('/json', () => ({ plain: true }))
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: return or not, sync or async, pull or push: events arrive and nothing is logged above info`, async (t) => {
    const server = await startServer(t, protocol, routes)
    for (const path of ['/async-return', '/async-call', '/sync-return', '/sync-call',
      '/push-async-return', '/push-async-call', '/push-sync-return', '/push-sync-call']) {
      const client = await openStream(t, server, path)
      await client.waitForEnd()
      t.same(client.events.map((event) => event.data), ['one', 'two', 'three'], path)
    }
    const completed = await server.logs.waitFor((record) => record.msg === 'request completed' &&
      (record.res as { statusCode?: number } | undefined)?.statusCode === 200, 'request completed')
    t.type(completed.responseTime, 'number', 'Fastify logs the completed stream with its response time')
    t.same(server.logs.atLeast(WARN), [], 'no warning, no error')
  })
}

test('a sync route that returns a value still sends it (the sync-return wrapper lets it through)', async (t) => {
  const server = await startServer(t, 'http1', routes)
  const response = await server.app.inject('/json')
  t.same(response.json(), { plain: true })
  const asyncRoute = await startServer(t, 'http1', (app) => { app.get('/', async () => 'text') })
  t.equal((await asyncRoute.app.inject('/')).body, 'text')
})

test('the handle is not thenable: awaiting it gives the handle', async (t) => {
  const got = signalled<{ thenable: boolean, same: boolean }>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', async (request, reply) => {
      const stream = reply.sse()
      const awaited = await stream
      got.resolve({ thenable: 'then' in stream, same: awaited === stream })
      stream.close()
    })
  })
  await openStream(t, server, '/')
  t.same(await within(got.promise, 'the handler'), { thenable: false, same: true })
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a hook that rejects runs before any stream opens`, async (t) => {
    let sourceCalls = 0
    const server = await startServer(t, protocol, (app) => {
      app.addHook('onRequest', async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') return await reply.code(401).send({ error: 'Unauthorized' })
      })
      app.get('/private', (request, reply) => reply.sse(() => { sourceCalls++; return three() }))
    })
    const denied = await openStream(t, server, '/private')
    await denied.waitForEnd()
    t.equal(denied.status, 401)
    t.match(denied.headers['content-type'], /^application\/json/)
    t.same(JSON.parse(denied.text), { error: 'Unauthorized' })
    t.equal(sourceCalls, 0, 'the source was never made')
    const allowed = await openStream(t, server, '/private', { headers: { authorization: 'Bearer ok' } })
    await allowed.waitForEnd()
    t.equal(allowed.events.length, 3)
    t.equal(sourceCalls, 1)
  })

  test(`${protocol}: onResponse hooks run when the server ends the stream; a client that leaves is seen by Fastify`, async (t) => {
    const seen: string[] = []
    const expected = ['onResponse /ends', 'onRequestAbort /forever']
    if (isHttp2(protocol)) expected.push('onResponse /forever')
    const hooks = new Map(expected.map((name) => [name, signalled()]))
    const server = await startServer(t, protocol, (app) => {
      app.addHook('onResponse', async (request) => {
        seen.push(`onResponse ${request.url}`)
        hooks.get(`onResponse ${request.url}`)?.resolve()
      })
      app.addHook('onRequestAbort', async (request) => {
        seen.push(`onRequestAbort ${request.url}`)
        hooks.get(`onRequestAbort ${request.url}`)?.resolve()
      })
      app.get('/ends', (request, reply) => reply.sse(three()))
      app.get('/forever', (request, reply) => { reply.sse().send('hello') })
    })
    const ends = await openStream(t, server, '/ends')
    await ends.waitForEnd()
    const forever = await openStream(t, server, '/forever')
    await forever.waitForEvents(1)
    forever.close()
    await within(Promise.all([...hooks.values()].map((hook) => hook.promise)), `the hooks: ${[...hooks.keys()].join(', ')}`)
    // Fastify runs onRequestAbort for a client that leaves. HTTP/2 also finishes the response (Node's
    // compatibility layer emits 'finish' when a stream closes); HTTP/1.1 does not finish a response whose socket is gone.
    t.same(seen.sort(), [...hooks.keys()].sort())
  })
}

test('reply.sse() twice throws FST_SSE_ALREADY_SENT, and the first stream goes on', async (t) => {
  const second = signalled<unknown>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => {
      const stream = reply.sse()
      try {
        reply.sse()
      } catch (error) {
        second.resolve(error)
      }
      stream.send('still here')
      stream.close()
    })
  })
  const client = await openStream(t, server, '/')
  t.match(await within(second.promise, 'the second call'), { code: 'FST_SSE_ALREADY_SENT', statusCode: 500 })
  await client.waitForEnd()
  t.same(client.events.map((event) => event.data), ['still here'])
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: HEAD gets the SSE headers, an empty body, and the source is not pulled`, async (t) => {
    let pulled = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => reply.sse((function * () { pulled++; yield 'x' })()))
    })
    const client = await openStream(t, server, '/events', { method: 'HEAD' })
    await client.waitForEnd()
    t.equal(client.status, 200)
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    t.equal(client.text, '')
    t.equal(pulled, 0)
  })
}
