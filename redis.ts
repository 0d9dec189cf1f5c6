// fastify-sse-h2/redis: the Redis store, apart so that only its users need ioredis.
export { RedisStore } from './lib/redis-store'
export type { RedisStoreOptions } from './lib/redis-store'
