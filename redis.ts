// fastify-sse-h2/redis: the Redis store, apart so that only its users need ioredis.
export { RedisStore } from './lib/stores/redis/store'
export type { RedisStoreOptions } from './lib/stores/redis/store'
