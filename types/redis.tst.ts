import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { expect, test } from 'tstyche'
import sse, { type SseStore } from 'fastify-sse-h2'
import { RedisStore, type RedisStoreOptions } from 'fastify-sse-h2/redis'

test('the Redis store is a store, made from a client or from options', () => {
  const app = Fastify({ http2: true })
  expect(new RedisStore({ client: new Redis(), prefix: 'app:sse:' })).type.toBeAssignableTo<SseStore>()
  expect(app.register(sse, { store: new RedisStore({ redis: 'redis://127.0.0.1:6379' }) })).type.not.toRaiseError()
  expect(new RedisStore({ redis: { host: 'redis', port: 6379 }, historySize: 500, historyMaxAge: 0, commandTimeout: 1000 }))
    .type.not.toRaiseError()
  expect(new RedisStore({ client: new Redis(), closeClient: true })).type.not.toRaiseError()
  expect(new RedisStore({ client: 'redis://localhost' })).type.toRaiseError()
  expect(new RedisStore({ redis: 'redis://localhost', historySize: '10' })).type.toRaiseError()
  expect<RedisStoreOptions>().type.toHaveProperty('prefix')
})
