import { t as root, test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { openStream } from './helpers/client'
import { eventually, startRedis, type RedisServer } from './helpers/redis'
import { startServer, type TestServer } from './helpers/server'
import { missingService, mustSkip } from './helpers/services'
import { signalled } from './helpers/wait'
import { ERROR } from './helpers/logs'
import { RedisStore } from '../redis'
import { RedisKeys } from '../lib/stores/redis/keys'

root.setTimeout(300_000)

// The Redis control's edges, with apps in this process over one real redis-server: messages that are not its own, a
// subscriber connection killed, Redis away and paused, an answer after the store closed, a subscription refused.

const skip = mustSkip(missingService('redis-server'))
const keys = new RedisKeys('sse:', 16)
const base = `sse:control{${keys.tag(0)}}`

async function admin (t: { teardown: (fn: () => unknown) => void }, redis: RedisServer): Promise<Redis> {
  const client = new Redis(redis.url)
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

function routes (app: FastifyInstance): void {
  app.get('/tagged', (request, reply) => reply.sse(app.sse.channel('news'), { tags: ['t'] }))
}

async function steered (t: Parameters<typeof startServer>[0], redis: RedisServer, options = {}): Promise<TestServer> {
  return await startServer(t, 'h2c', routes, { plugin: { store: new RedisStore({ redis: redis.url, ...options }) } })
}

test('messages that are not the control\'s, and a subscriber connection killed: the control goes on', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const server = await steered(t, redis)
  await openStream(t, server, '/tagged')
  t.equal(await server.app.sse.tagged('t').count(), 1)
  const own = (server.app.sse.store as RedisStore).control.id
  for (const channel of [`${base}all`, `${base}to:${own}`]) {
    for (const text of ['not json', '{"x":1}', '[1]', 'null']) await redisAdmin.publish(channel, text)
  }
  t.equal(await server.app.sse.tagged('t').count(), 1, 'what is not a message is let be')
  await redisAdmin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await eventually(async () => (await server.app.sse.tagged('t').close()).unanswered.length === 0 &&
    await server.app.sse.tagged('t').count() === 0, 'the control subscribed again, and the stream closed by it')
  t.equal(server.logs.atLeast(ERROR).length, 0)
})

test('Redis away: actions fail with a code, then work once it is back; Redis paused: reports wait for each other', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  const server = await steered(t, redis, { commandTimeout: 3000 })
  await openStream(t, server, '/tagged')
  await eventually(async () => (await server.app.sse.channel('news').presence()).subscribers === 1, 'the stream reported')
  // Paused for longer than two reports' interval: the next report waits for the one on its way.
  await redisAdmin.call('CLIENT', 'PAUSE', '2500', 'ALL')
  await new Promise((resolve) => setTimeout(resolve, 2700))
  t.equal((await server.app.sse.channel('news').presence()).subscribers, 1, 'reported once Redis answered')
  await redis.stop()
  await t.rejects(server.app.sse.tagged('t').count(), { code: 'FST_SSE_CONTROL_UNAVAILABLE' })
  await t.rejects(server.app.sse.channel('news').presence(), { code: 'FST_SSE_CONTROL_UNAVAILABLE' })
  // A renewal and a report fail meanwhile: said at debug level.
  await server.logs.waitFor((record) => /could not renew its place/.test(record.msg ?? ''), 'a renewal that failed')
  await server.logs.waitFor((record) => /could not report its counts/.test(record.msg ?? ''), 'a report that failed')
  await redis.start()
  await eventually(async () => await server.app.sse.tagged('t').count().then((count) => count === 1, () => false),
    'steering once Redis is back', 20_000)
  await eventually(async () => (await server.app.sse.channel('news').presence()).subscribers === 1, 'presence once Redis is back', 20_000)
})

test('an answer after its store closed is not sent; a store closed cannot be joined', { skip }, async (t) => {
  const redis = await startRedis(t)
  const sender = new RedisStore({ redis: redis.url })
  const answerer = new RedisStore({ redis: redis.url })
  const said: string[] = []
  answerer.attach({ debug: (_details: object, message: string) => said.push(message) } as unknown as FastifyBaseLogger)
  t.teardown(async () => await sender.close())
  const release = signalled<object>()
  const member = await sender.control.join(() => ({ from: 'sender' }))
  await answerer.control.join(async () => await release.promise)
  const sending = member.send({ n: 1 }, 1000)
  await new Promise((resolve) => setTimeout(resolve, 100))
  await answerer.close()
  release.resolve({ from: 'answerer' })
  const result = await sending
  t.equal(result.unanswered.length, 1, 'named: it answered too late, its store closed')
  await eventually(async () => said.some((message) => /answer to another instance could not be sent/.test(message)), 'said at debug level')
  await t.rejects(answerer.control.join(() => ({})), /closed/)
})

test('a subscription to the control Redis refuses (an ACL) is said; the instance is named as not answering', { skip }, async (t) => {
  const redis = await startRedis(t)
  const redisAdmin = await admin(t, redis)
  // This instance may subscribe to its channel only, and publish to it only: the others' actions do not reach it.
  await redisAdmin.call('ACL', 'SETUSER', 'narrow', 'on', '>secret', '~*', '+@all', 'resetchannels', `&${keys.stream('news')}`)
  const narrow = await startServer(t, 'h2c', routes, {
    plugin: { store: new RedisStore({ redis: `redis://narrow:secret@127.0.0.1:${redis.port}` }) }
  })
  const other = await steered(t, redis)
  const client = await openStream(t, narrow, '/tagged')
  t.equal(client.status, 200, 'its stream opens all the same')
  const refused = await narrow.logs.waitFor((record) => record.level === ERROR && /control channel/.test(record.msg ?? ''), 'the refusal')
  t.match(refused, { msg: /steering cannot reach this instance/ })
  const result = await other.app.sse.tagged('t').close()
  t.same(result.streams, 0, 'its streams are not reached')
  t.equal(result.unanswered.length, 1, 'and it is named')
  await t.rejects(narrow.app.sse.tagged('t').count(), { code: 'FST_SSE_CONTROL_UNAVAILABLE', message: /can't publish/ },
    'its own actions are refused by Redis')
})
