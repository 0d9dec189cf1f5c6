import { test } from 'tap'
import Fastify from 'fastify'
import sse, { errors } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream } from '../index'

test('config.sse sets retry, serializer and compression for the streams of one route', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/tuned', { config: { sse: { retry: 1500, serializer: (data) => `<${JSON.stringify(data)}>`, compression: ['gzip'] } } },
      (request, reply) => reply.sse([{ data: { n: 1 } }]))
    app.get('/plain', (request, reply) => reply.sse([{ data: { n: 1 } }]))
    app.get('/override', { config: { sse: { retry: 1500 } } }, (request, reply) => reply.sse([{ data: 1 }], { retry: 10 }))
  }, { plugin: { retry: 3000 } })
  const tuned = await openStream(t, server, '/tuned')
  await tuned.waitForEnd()
  t.same(tuned.retries, [1500])
  t.same(tuned.events.map((event) => event.data), ['<{"n":1}>'])
  t.equal(tuned.headers['content-encoding'], undefined, 'the client did not ask for gzip')
  const zipped = await openStream(t, server, '/tuned', { headers: { 'accept-encoding': 'gzip' } })
  t.equal(zipped.headers['content-encoding'], 'gzip')
  const plain = await openStream(t, server, '/plain', { headers: { 'accept-encoding': 'gzip' } })
  await plain.waitForEnd()
  t.same(plain.retries, [3000], 'other routes keep the plugin\'s options')
  t.same(plain.events.map((event) => event.data), ['{"n":1}'])
  t.equal(plain.headers['content-encoding'], undefined)
  const override = await openStream(t, server, '/override')
  await override.waitForEnd()
  t.same(override.retries, [10], 'reply.sse() options win over the route\'s')
})

test('config.sse.heartbeatInterval: each route\'s streams get heartbeats at its own interval', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/often', { config: { sse: { heartbeatInterval: 40 } } }, (request, reply) => { reply.sse() })
    app.get('/never', { config: { sse: { heartbeatInterval: 0 } } }, (request, reply) => { reply.sse() })
    app.get('/plugin', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 400 } })
  const often = await openStream(t, server, '/often')
  const never = await openStream(t, server, '/never')
  const plugin = await openStream(t, server, '/plugin')
  await plugin.waitForComments(2)
  t.ok(often.comments.length >= 10, `the 40 ms route got ${often.comments.length} heartbeats meanwhile`)
  t.equal(never.comments.length, 0, 'the route that turned them off got none')
})

test('config.sse.maxBufferedBytes: a push stream of that route is dropped past its own bound', async (t) => {
  const handles = { small: signalled<EventStream>(), large: signalled<EventStream>() }
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/small', { config: { sse: { maxBufferedBytes: 4096 } } }, (request, reply) => { handles.small.resolve(reply.sse()) })
    app.get('/large', (request, reply) => { handles.large.resolve(reply.sse()) })
  })
  const small = await openStream(t, server, '/small')
  const large = await openStream(t, server, '/large')
  small.pause()
  large.pause()
  const event = { data: 'x'.repeat(1000) }
  const smallStream = await within(handles.small.promise, 'the small stream')
  const largeStream = await within(handles.large.promise, 'the large stream')
  // Turns apart: what was written in this turn and the one before has not had its chance to reach the client.
  // The client's flow-control window (64 KiB) takes the first events whether it reads or not.
  for (let i = 0; i < 200 && !smallStream.closed; i++) {
    smallStream.send(event)
    largeStream.send(event)
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(smallStream.closed, 'over 4 KiB behind: closed')
  t.equal(smallStream.signal.reason.code, 'FST_SSE_SLOW_CLIENT')
  t.notOk(largeStream.closed, 'the plugin\'s 256 KiB bound holds for the other route')
  const warning = await server.logs.waitFor((record) => record.level === WARN, 'the warning')
  t.match(warning, { maxBufferedBytes: 4096 })
  largeStream.close()
})

test('limits count the streams of every route, whatever its timing', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/fast', { config: { sse: { heartbeatInterval: 100, writeTimeout: 1000 } } }, (request, reply) => { reply.sse() })
    app.get('/slow', (request, reply) => { reply.sse() })
  }, { plugin: { limits: { maxStreams: 1 } } })
  const first = await openStream(t, server, '/fast')
  t.equal(first.status, 200)
  const second = await openStream(t, server, '/slow', { headers: { accept: '*/*' } })
  await second.waitForEnd()
  t.equal(second.status, 503)
  t.match(JSON.parse(second.text), { code: 'FST_SSE_TOO_MANY_STREAMS' })
})

test('a bad or unknown route option fails when the route is added, naming the option and the route', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ heartbeatInterval: -1 }, /option config\.sse\.heartbeatInterval must be a whole number .* \(route GET \/bad\)/],
    [{ heartbeat: 5000 }, /option config\.sse\.heartbeat must be a known option \(did you mean config\.sse\.heartbeatInterval\?\)/],
    [{ retry: 'soon' }, /option config\.sse\.retry must be/],
    [{ serializer: 'json' }, /option config\.sse\.serializer must be a function/],
    [{ compression: ['deflate'] }, /option config\.sse\.compression must be/],
    [{ maxBufferedBytes: 0 }, /option config\.sse\.maxBufferedBytes must be a positive/],
    [{ writeTimeout: 1.5 }, /option config\.sse\.writeTimeout must be/],
    [{ negotiate: 'yes' }, /option config\.sse\.negotiate must be a boolean/],
    ['fast', /option config\.sse must be an object/]
  ]
  for (const [options, message] of bad) {
    const app = Fastify()
    await app.register(sse)
    t.throws(() => app.get('/bad', { config: { sse: options as never } }, () => 'x'), { code: 'FST_SSE_INVALID_OPTION', message },
      JSON.stringify(options))
    await app.close()
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse)
  t.throws(() => app.get('/both', {
    schema: { response: { 200: { content: { 'text/event-stream': { schema: { type: 'object' } } } } } },
    config: { sse: { serializer: String } }
  }, () => 'x'), { message: /config\.sse\.serializer must be unset on a route with an event schema/ })
  // Inside a plugin, the failure is the plugin's: ready() rejects.
  const inPlugin = Fastify()
  await inPlugin.register(sse)
  inPlugin.register(async (child) => { child.get('/x', { config: { sse: { retry: -1 } } }, () => 'x') })
  await t.rejects(async () => await inPlugin.ready(), errors.FST_SSE_INVALID_OPTION)
  await inPlugin.close()
})

test('a route added before the plugin was registered has its config.sse refused when it streams, not ignored', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(sse)
  // Not awaited: the plugin's onRoute hook is not there yet when this route is added.
  app.get('/early', { config: { sse: { retry: 10 } } }, (request, reply) => reply.sse([]))
  const response = await app.inject('/early')
  t.equal(response.statusCode, 500)
  t.match(response.json(), { code: 'FST_SSE_INVALID_OPTION', message: /config\.sse must be read when the route is added/ })
})
