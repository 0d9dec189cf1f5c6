import { test } from 'tap'
import { Readable } from 'node:stream'
import Fastify, { type FastifyError } from 'fastify'
import { startServer, type Protocol } from './helpers/server'
import { openStream } from './helpers/client'
import { ERROR, WARN } from './helpers/logs'
import { within } from './helpers/wait'
import sse, { type EventStream } from '../index'

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'http1']
// A client that reads status codes (curl's Accept) is refused with a 503; one that asks for the event stream by name
// (EventSource) gets the refusal it survives: test/refusals.test.ts.
const READS_STATUS = { headers: { accept: '*/*' } }

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: past maxStreams a new stream gets 503 with Retry-After; the open ones are untouched`, async (t) => {
    const handles: EventStream[] = []
    let sourcesCalled = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/push', async (request, reply) => {
        const stream = reply.sse()
        handles.push(stream)
        return stream
      })
      app.get('/pull', (request, reply) => reply.sse(async function * () {
        sourcesCalled++
        yield 'pulled'
      }))
    }, { plugin: { limits: { maxStreams: 3 } } })
    const open = await Promise.all([1, 2, 3].map(async () => await openStream(t, server, '/push')))
    t.same(open.map((client) => client.status), [200, 200, 200])

    const refused = await openStream(t, server, '/pull', READS_STATUS)
    await refused.waitForEnd()
    t.equal(refused.status, 503)
    t.equal(refused.headers['retry-after'], '5', 'Retry-After: the default 5 seconds')
    t.match(refused.headers['content-type'], /^application\/json/, 'no SSE header')
    t.match(JSON.parse(refused.text), {
      statusCode: 503, code: 'FST_SSE_TOO_MANY_STREAMS', error: 'Service Unavailable', message: /maxStreams: 3/
    })
    t.equal(sourcesCalled, 0, 'the refused route\'s source was never called')
    const refusedHandle = await openStream(t, server, '/push', READS_STATUS)
    t.equal(refusedHandle.status, 503)
    const handle = handles[3]
    t.equal(handle.closed, true, 'the refused handler got a closed handle')
    t.match(handle.signal.reason, { code: 'FST_SSE_TOO_MANY_STREAMS', statusCode: 503 })
    t.equal(handle.send('nowhere'), false, 'send() on it writes nothing and does not throw')

    for (const stream of handles.slice(0, 3)) stream.send('still here')
    await Promise.all(open.map(async (client) => await client.waitForEvents(1)))
    t.ok(open.every((client) => client.events[0].data === 'still here'), 'the three open streams go on')

    // A place frees when a stream's connection closes.
    open[0].close()
    await within(new Promise((resolve) => handles[0].signal.addEventListener('abort', resolve)), 'the first stream to close')
    const again = await openStream(t, server, '/pull')
    await again.waitForEvents(1)
    t.equal(again.status, 200)
    t.equal(sourcesCalled, 1)

    const warnings = server.logs.atLeast(WARN).filter((record) => record.level === WARN)
    t.equal(warnings.length, 1, 'two refusals, one warning, and no "reply already sent" from the async handler')
    t.match(warnings[0], { msg: /new streams refused, too many open: an EventSource is told when to come back/, refused: 1, maxStreams: 3 })
    const errors = server.logs.atLeast(ERROR)
    t.same(errors.map((record) => record.err?.code), ['FST_SSE_TOO_MANY_STREAMS', 'FST_SSE_TOO_MANY_STREAMS'],
      'Fastify\'s error handler logs each refusal, as it does every 5xx')
  })
}

const SHAPES = ['async-return', 'async-call', 'sync-return', 'sync-call',
  'pull-async-return', 'pull-async-call', 'pull-sync-return', 'pull-sync-call']

function * one (): Generator<string> {
  yield 'one'
}

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a refusal goes through Fastify's reply: onSend hooks and the error handler see it, in every handler shape`, async (t) => {
    const sent: Array<{ url: string, statusCode: number, payload: unknown }> = []
    const server = await startServer(t, protocol, async (app) => {
      // Async, so that the refusal is still being sent when the handler returns.
      app.addHook('onSend', async (request, reply, payload) => {
        await new Promise((resolve) => setImmediate(resolve))
        sent.push({ url: request.url, statusCode: reply.statusCode, payload })
        return payload
      })
      app.get('/hold', (request, reply) => { reply.sse() })
      app.get('/async-return', async (request, reply) => reply.sse())
      app.get('/async-call', async (request, reply) => { reply.sse() })
      app.get('/sync-return', (request, reply) => reply.sse())
      app.get('/sync-call', (request, reply) => { reply.sse() })
      app.get('/pull-async-return', async (request, reply) => reply.sse(one()))
      app.get('/pull-async-call', async (request, reply) => { reply.sse(one()) })
      app.get('/pull-sync-return', (request, reply) => reply.sse(one()))
      app.get('/pull-sync-call', (request, reply) => { reply.sse(one()) })
      await app.register(async (child) => {
        // The README's error handler, as written there.
        child.setErrorHandler((error: FastifyError, request, reply) => {
          if (error.code === 'FST_SSE_TOO_MANY_STREAMS' || error.code === 'FST_SSE_SERVER_CLOSING') {
            request.log.info({ code: error.code }, 'event stream refused')
            return reply.send({ code: error.code, message: error.message })   // keeps the 503 and its Retry-After
          }
          return reply.send(error)
        })
        child.get('/custom', (request, reply) => reply.sse())
      })
    }, { plugin: { limits: { maxStreams: 1, retryAfter: 7 } } })
    const held = await openStream(t, server, '/hold')
    t.equal(held.status, 200)

    for (const shape of SHAPES) {
      const refused = await openStream(t, server, `/${shape}`, READS_STATUS)
      await refused.waitForEnd()
      t.equal(refused.status, 503, shape)
      t.equal(refused.headers['retry-after'], '7', `${shape}: Retry-After`)
      t.match(JSON.parse(refused.text), { statusCode: 503, code: 'FST_SSE_TOO_MANY_STREAMS' }, `${shape}: the body`)
    }
    const custom = await openStream(t, server, '/custom', READS_STATUS)
    await custom.waitForEnd()
    t.equal(custom.status, 503)
    t.equal(custom.headers['retry-after'], '7', 'the Retry-After set before the error handler ran is kept')
    t.match(JSON.parse(custom.text), { code: 'FST_SSE_TOO_MANY_STREAMS', message: /maxStreams: 1/ }, 'the route\'s error handler wrote the body')
    t.same(server.logs.atLeast(ERROR).map((record) => (record.req as { url?: string } | undefined)?.url),
      SHAPES.map((shape) => `/${shape}`), 'Fastify\'s default error handler logged the others at error level; the custom one did not')
    t.ok(server.logs.withMessage('event stream refused').length === 1, 'it logged its own line')

    t.same(sent.map((call) => call.url), [...SHAPES.map((shape) => `/${shape}`), '/custom'],
      'the onSend hook saw each refusal once: none was sent twice')
    t.ok(sent.every((call) => call.statusCode === 503), 'with its status')
    t.same(server.logs.atLeast(WARN).filter((record) => record.level < ERROR).map((record) => record.msg),
      ['fastify-sse-h2: new streams refused, too many open: an EventSource is told when to come back (200, a retry:, the end), other clients get 503 and Retry-After'],
      'no "Reply was already sent": one warning of ours')
  })
}

test('maxStreamsPerAddress counts by request.ip; a Readable refused is destroyed; retryAfter is set', async (t) => {
  const readables: Readable[] = []
  const server = await startServer(t, 'http1', (app) => {
    app.get('/feed', (request, reply) => {
      const readable = new Readable({ objectMode: true, read () {} })
      readables.push(readable)
      return reply.sse(readable)
    })
  }, { plugin: { limits: { maxStreamsPerAddress: 2, retryAfter: 30 } }, fastify: { trustProxy: true } })
  const from = (address: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': address, ...READS_STATUS.headers } })
  const first = await Promise.all([1, 2].map(async () => await openStream(t, server, '/feed', from('192.0.2.1'))))
  t.same(first.map((client) => client.status), [200, 200])
  const third = await openStream(t, server, '/feed', from('192.0.2.1'))
  t.equal(third.status, 503)
  t.equal(third.headers['retry-after'], '30')
  await third.waitForEnd()
  t.match(JSON.parse(third.text), { message: /maxStreamsPerAddress: 2/ })
  t.equal(readables[2].destroyed, true, 'the refused Readable was destroyed, so that it lets go of what it holds')
  const other = await openStream(t, server, '/feed', from('192.0.2.2'))
  t.equal(other.status, 200, 'another address is not limited by the first one\'s streams')
  readables[0].push({ data: 'for the first' })
  await first[0].waitForEvents(1)
  t.equal(first[0].events[0].data, 'for the first')
})

test('limits are checked when the plugin registers', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /option limits must be an object/],
    [{ maxStreams: 0 }, /limits\.maxStreams must be a whole number, 1 or more/],
    [{ maxStreamsPerAddress: 1.5 }, /limits\.maxStreamsPerAddress/],
    [{ retryAfter: -1 }, /limits\.retryAfter must be a whole number of seconds/]
  ]
  for (const [limits, message] of bad) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(sse, { limits } as never) }, { code: 'FST_SSE_INVALID_OPTION', message })
  }
})
