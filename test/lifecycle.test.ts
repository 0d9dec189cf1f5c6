import { test } from 'tap'
import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { PROTOCOLS, isHttp2, startServer, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN, type LogRecord } from './helpers/logs'
import { watchProcess } from './helpers/process-problems'
import type { EventStream } from '../index'

function * three (): Generator<string> {
  yield 'one'
  yield 'two'
  yield 'three'
}

// The handler returns while the stream is still open: the rest is sent, and the stream closed, later.
function pushThree (reply: FastifyReply): EventStream {
  const stream = reply.sse()
  stream.send('one')
  setImmediate(() => {
    stream.send('two')
    stream.send('three')
    stream.close()
  })
  return stream
}

const SHAPES = ['async-return', 'async-call', 'sync-return', 'sync-call',
  'push-async-return', 'push-async-call', 'push-sync-return', 'push-sync-call']

function shapes (app: FastifyInstance): void {
  app.get('/async-return', async (request, reply) => reply.sse(three()))
  app.get('/async-call', async (request, reply) => { reply.sse(three()) })
  app.get('/sync-return', (request, reply) => reply.sse(three()))
  app.get('/sync-call', (request, reply) => { reply.sse(three()) })
  app.get('/push-async-return', async (request, reply) => pushThree(reply))
  app.get('/push-async-call', async (request, reply) => { pushThree(reply) })
  app.get('/push-sync-return', (request, reply) => pushThree(reply))
  app.get('/push-sync-call', (request, reply) => { pushThree(reply) })
}

function requestId (server: TestServer, url: string): string | undefined {
  return server.logs.records.find((record) => record.msg === 'incoming request' &&
    (record.req as { url?: string } | undefined)?.url === url)?.reqId
}

async function completed (server: TestServer, reqId: string | undefined): Promise<LogRecord> {
  return await server.logs.waitFor((record) => record.msg === 'request completed' && record.reqId === reqId,
    `request completed for ${String(reqId)}`)
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: return or not, sync or async, pull or push: events arrive and nothing is logged above info`, async (t) => {
    const server = await startServer(t, protocol, shapes)
    for (const shape of SHAPES) {
      const client = await openStream(t, server, `/${shape}`)
      await client.waitForEnd()
      t.equal(client.status, 200, shape)
      t.same(client.events.map((event) => event.data), ['one', 'two', 'three'], shape)
      const done = await completed(server, requestId(server, `/${shape}`))
      t.equal((done.res as { statusCode?: number }).statusCode, 200, `${shape}: Fastify logs the request as completed`)
    }
    t.same(server.logs.atLeast(WARN), [], 'no warning, no error')
  })
}

test('the handle is not thenable: awaiting it gives the handle', async (t) => {
  const got = signalled<{ thenable: boolean, same: boolean }>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', async (request, reply) => {
      const stream = reply.sse()
      const awaited = await stream
      got.resolve({ thenable: 'then' in stream, same: awaited === stream })
      stream.send('after await')
      stream.close()
    })
  })
  const client = await openStream(t, server, '/')
  t.same(await within(got.promise, 'the handler'), { thenable: false, same: true })
  await client.waitForEnd()
  t.same(client.events.map((event) => event.data), ['after await'])
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a hook that rejects runs before any stream opens`, async (t) => {
    let sourceCalls = 0
    const unauthorized = (): Error => Object.assign(new Error('no token'), { statusCode: 401 })
    const source = (): Iterable<string> => { sourceCalls++; return three() }
    const server = await startServer(t, protocol, (app) => {
      app.get('/on-request', {
        onRequest: async (request) => { if (request.headers.authorization !== 'Bearer ok') throw unauthorized() }
      }, (request, reply) => reply.sse(source))
      app.get('/pre-handler', {
        preHandler: async (request) => { if (request.headers.authorization !== 'Bearer ok') throw unauthorized() }
      }, (request, reply) => reply.sse(source))
    })
    for (const path of ['/on-request', '/pre-handler']) {
      const denied = await openStream(t, server, path)
      await denied.waitForEnd()
      t.equal(denied.status, 401, path)
      t.equal(denied.headers['content-type'], 'application/json; charset=utf-8', `${path}: not an event stream`)
      t.same(JSON.parse(denied.text), { statusCode: 401, error: 'Unauthorized', message: 'no token' })
      t.same(denied.events, [])
    }
    t.equal(sourceCalls, 0, 'the source was never made')

    for (const path of ['/on-request', '/pre-handler']) {
      const allowed = await openStream(t, server, path, { headers: { authorization: 'Bearer ok' } })
      await allowed.waitForEnd()
      t.equal(allowed.headers['content-type'], 'text/event-stream; charset=utf-8', path)
      t.same(allowed.events.map((event) => event.data), ['one', 'two', 'three'], path)
    }
    t.equal(sourceCalls, 2, 'once the hook lets the request through, the stream opens')
  })

  test(`${protocol}: the server ends the stream: onResponse runs and Fastify logs the request as completed`, async (t) => {
    const onResponse = new Map([['/source-ends', signalled()], ['/closed', signalled()]])
    const server = await startServer(t, protocol, (app) => {
      app.addHook('onResponse', async (request) => { onResponse.get(request.url)?.resolve() })
      app.get('/source-ends', (request, reply) => reply.sse(three()))
      app.get('/closed', (request, reply) => {
        const stream = reply.sse()
        stream.send('bye')
        setImmediate(() => stream.close())
      })
    })
    for (const [path, hook] of onResponse) {
      const client = await openStream(t, server, path)
      await client.waitForEnd()
      await within(hook.promise, `onResponse for ${path}`)
      const reqId = requestId(server, path)
      const done = await completed(server, reqId)
      t.ok(reqId, `${path}: the request had an id`)
      t.type(done.responseTime, 'number', `${path}: logged with its response time`)
      t.equal((done.res as { statusCode?: number }).statusCode, 200)
    }
    t.same(server.logs.atLeast(WARN), [])
  })

  test(`${protocol}: the client goes away: Fastify runs onRequestAbort, and ${isHttp2(protocol)
    ? 'HTTP/2 finishes the response (onResponse, "request completed")'
    : 'HTTP/1.1 does not finish the response (no onResponse, no "request completed")'}`, async (t) => {
    const seen: string[] = []
    const aborted = signalled()
    const closed = signalled<unknown>()
    const responded = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.addHook('onResponse', async (request) => {
        seen.push(`onResponse ${request.url}`)
        if (request.url === '/forever') responded.resolve()
      })
      app.addHook('onRequestAbort', async (request) => {
        seen.push(`onRequestAbort ${request.url}`)
        aborted.resolve()
      })
      app.get('/forever', (request, reply) => {
        const stream = reply.sse()
        stream.signal.addEventListener('abort', () => closed.resolve(stream.signal.reason))
        stream.send('hello')
      })
      app.get('/after', async () => ({ ok: true }))
    })
    const client = await openStream(t, server, '/forever')
    await client.waitForEvents(1)
    client.close()
    t.match(await within(closed.promise, 'the stream signal'), { code: 'FST_SSE_CLIENT_CLOSED' })
    await within(aborted.promise, 'onRequestAbort')
    const reqId = requestId(server, '/forever')

    if (isHttp2(protocol)) {
      // Node's compatibility layer emits 'finish' on a response whose stream closed, whoever closed it.
      await within(responded.promise, 'onResponse')
      const done = await completed(server, reqId)
      t.type(done.responseTime, 'number', 'logged as completed, with its response time')
      t.same(seen, ['onRequestAbort /forever', 'onResponse /forever'])
    } else {
      // A whole request after it bounds the wait: by then a 'finish' would have come long ago.
      const after = await openStream(t, server, '/after')
      await after.waitForEnd()
      await completed(server, requestId(server, '/after'))
      t.same(seen, ['onRequestAbort /forever', 'onResponse /after'], 'onResponse did not run for the stream')
      t.same(server.logs.records.filter((record) => record.reqId === reqId && record.msg === 'request completed'), [],
        'Fastify does not log it as completed')
    }
    t.same(server.logs.atLeast(WARN), [])
  })
}

test('reply.sse() on a reply already sent, even from a timer, warns naming the route and returns a closed handle, as reply.send() does', async (t) => {
  const problems = watchProcess(t)
  const handles: Record<string, EventStream> = {}
  const timerDone = signalled()
  let sourceCalls = 0
  const readable = new Readable({ read () {} })
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/twice', (request, reply) => {
      const stream = reply.sse()
      handles.twice = reply.sse()
      stream.send('still here')
      stream.close()
    })
    app.get('/after-send', async (request, reply) => {
      reply.send({ sent: true })
      handles.afterSend = reply.sse(() => { sourceCalls++; return three() })
      return reply
    })
    app.get('/late/:id', (request, reply) => {
      reply.send({ sent: true })
      setTimeout(() => {
        // Fastify's own misuse first, for comparison, then ours: neither may throw into the timer.
        reply.send({ again: true })
        handles.late = reply.sse(readable)
        timerDone.resolve()
      }, 10)
    })
    app.setNotFoundHandler((request, reply) => {
      reply.code(404).send({ found: false })
      handles.notFound = reply.sse()
    })
  })
  const client = await openStream(t, server, '/twice')
  await client.waitForEnd()
  t.same(client.events.map((event) => event.data), ['still here'], 'the first stream goes on')

  for (const [path, body] of [['/after-send', { sent: true }], ['/late/7', { sent: true }], ['/nowhere', { found: false }]] as const) {
    const sent = await openStream(t, server, path)
    await sent.waitForEnd()
    t.same(JSON.parse(sent.text), body, `${path}: the reply that was sent is untouched`)
  }
  await within(timerDone.promise, 'the timer')
  for (const [name, handle] of Object.entries(handles)) {
    t.equal(handle.closed, true, `${name}: a closed handle`)
    t.match(handle.signal.reason, { code: 'FST_SSE_ALREADY_SENT' }, `${name}: its signal says why`)
    t.equal(handle.send('nowhere'), false, `${name}: send() on it writes nothing and does not throw`)
  }
  t.equal(sourceCalls, 0, 'a function source is not called')
  t.equal(readable.destroyed, true, 'a Readable source is let go')
  t.same(problems, [], 'nothing thrown into the timer')

  const warnings = server.logs.atLeast(WARN)
  t.same(warnings.map((record) => record.level), [WARN, WARN, WARN, WARN, WARN], 'four warnings of ours, one of Fastify, nothing else')
  t.same(warnings.filter((record) => record.err?.code === 'FST_SSE_ALREADY_SENT').map((record) => record.msg).sort(), [
    'fastify-sse-h2: reply.sse() was called on a reply that was already sent, in route GET /twice; it returned a closed stream',
    'fastify-sse-h2: reply.sse() was called on a reply that was already sent, in route GET /after-send; it returned a closed stream',
    'fastify-sse-h2: reply.sse() was called on a reply that was already sent, in route GET /late/:id; it returned a closed stream',
    'fastify-sse-h2: reply.sse() was called on a reply that was already sent, in route GET /nowhere; it returned a closed stream'
  ].sort(), 'each names the route (or, with no route, the URL)')
  t.match(warnings.find((record) => record.err?.code === 'FST_ERR_REP_ALREADY_SENT'), { err: { message: /\/late\/7/ } },
    'Fastify\'s own reply.send() on a reply already sent: a warning too')
  t.ok(warnings.every((record) => typeof record.reqId === 'string'), 'each with its request id')
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: HEAD gets the SSE headers, an empty body, and the source is not pulled`, async (t) => {
    let pulled = 0
    function * counted (): Generator<string> {
      pulled++
      yield 'x'
    }
    // A Readable never read must still be destroyed, or a file or cursor behind it stays open.
    const readable = new Readable({ read () { pulled++ } })
    const server = await startServer(t, protocol, (app) => {
      app.get('/sync', (request, reply) => reply.sse(counted()))
      app.get('/async', async (request, reply) => reply.sse(counted()))
      app.get('/readable', (request, reply) => reply.sse(readable))
    })
    for (const path of ['/sync', '/async', '/readable']) {
      const client = await openStream(t, server, path, { method: 'HEAD' })
      await client.waitForEnd()
      t.equal(client.status, 200, path)
      t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
      t.equal(client.headers['cache-control'], 'no-cache, no-transform')
      t.equal(client.headers['x-accel-buffering'], 'no')
      t.equal(client.text, '', 'no body')
      await completed(server, requestId(server, path))
    }
    t.equal(pulled, 0, 'no event was pulled')
    t.ok(readable.destroyed, 'the Readable source was let go')
    t.same(server.logs.atLeast(WARN), [])
  })
}

test('non-SSE routes are untouched by the wrapper that quiets sync `return reply.sse()`', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.decorate('answer', 42)
    app.get('/object', () => ({ plain: true }))
    app.get('/this', function (this: FastifyInstance) { return { answer: (this as unknown as { answer: number }).answer } })
    app.get('/promise', () => Promise.resolve({ later: true }))
    app.get('/send', (request, reply) => { reply.send({ sent: true }) })
    app.get('/return-send', (request, reply) => reply.code(201).send({ returned: true }))
    app.get('/async', async () => ({ async: true }))
  })
  const expected: Record<string, [number, unknown]> = {
    '/object': [200, { plain: true }],
    '/this': [200, { answer: 42 }],
    '/promise': [200, { later: true }],
    '/send': [200, { sent: true }],
    '/return-send': [201, { returned: true }],
    '/async': [200, { async: true }]
  }
  for (const [path, [status, body]] of Object.entries(expected)) {
    const client = await openStream(t, server, path, { headers: { accept: 'application/json' } })
    await client.waitForEnd()
    t.equal(client.status, status, path)
    t.equal(client.headers['content-type'], 'application/json; charset=utf-8', path)
    t.same(JSON.parse(client.text), body, path)
  }
  t.same(server.logs.atLeast(WARN), [], 'no "Reply was already sent" or any other warning')
})
