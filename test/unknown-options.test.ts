import { test } from 'tap'
import Fastify from 'fastify'
import sse, { errors, type FastifySseOptions } from '../index'
import { startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { nearestName } from '../lib/core/option-names'

test('a misspelt plugin option fails register, naming it and the nearest valid name', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ heartbeat: 5000 }, /option heartbeat must be a known option \(did you mean heartbeatInterval\?\), got 5000/],
    [{ serialiser: JSON.stringify }, /option serialiser must be a known option \(did you mean serializer\?\)/],
    [{ maxBufferBytes: 1024 }, /did you mean maxBufferedBytes\?/],
    [{ Retry: 1000 }, /did you mean retry\?/],
    [{ history: 10 }, /did you mean historySize\?/],
    [{ limits: { maxStream: 10 } }, /option limits\.maxStream must be a known option \(did you mean limits\.maxStreams\?\)/],
    [{ limits: { retry: 10 } }, /option limits\.retry must be a known option \(did you mean limits\.retryAfter\?\)/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    app.register(sse, options as FastifySseOptions)
    const error = await app.ready().then(() => undefined, (error: unknown) => error)
    t.ok(error instanceof errors.FST_SSE_INVALID_OPTION, JSON.stringify(options))
    t.match(error, { code: 'FST_SSE_INVALID_OPTION', message })
    await app.close()
  }
})

test('the options Fastify\'s register() takes for itself are not refused', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse, { prefix: '/events', logLevel: 'warn', heartbeatInterval: 0 } as FastifySseOptions)
  await app.ready()
  t.pass('registered')
})

test('a misspelt reply.sse() option is a 500 before any SSE header; a route option says where it belongs', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/typo', (request, reply) => reply.sse([], { retyr: 10 } as never))
    app.get('/route-option', (request, reply) => reply.sse([], { heartbeatInterval: 10 } as never))
  })
  const typo = await openStream(t, server, '/typo')
  await typo.waitForEnd()
  t.equal(typo.status, 500)
  t.match(JSON.parse(typo.text), { code: 'FST_SSE_INVALID_OPTION', message: /option retyr must be a known option \(did you mean retry\?\)/ })
  const routeOption = await openStream(t, server, '/route-option')
  await routeOption.waitForEnd()
  t.match(JSON.parse(routeOption.text), { message: /option heartbeatInterval must be set in config\.sse of the route, not here/ })
})

test('the nearest name: one that holds the name, or is held by it, else the fewest edits', async (t) => {
  const names = ['heartbeatInterval', 'retry', 'serializer', 'maxBufferedBytes']
  t.equal(nearestName('heartbeat', names), 'heartbeatInterval')
  t.equal(nearestName('interval', names), 'heartbeatInterval')
  t.equal(nearestName('serialize', names), 'serializer')
  t.equal(nearestName('rety', names), 'retry')
  t.equal(nearestName('MAXBUFFEREDBYTES', names), 'maxBufferedBytes')
  t.equal(nearestName('zzz', ['abc', 'zzy']), 'zzy')
})
