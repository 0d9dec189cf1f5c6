import { FST_SSE_IOREDIS_MISSING } from '../../core/errors'

/**
 * ioredis, an optional peer dependency: required only when the Redis store makes its own client, so that only
 * its users need it installed, and those who forgot are told so.
 */
export function requireIoredis (): typeof import('ioredis') {
  try {
    return require('ioredis') as typeof import('ioredis')
    // ioredis is installed in this checkout: test/exports.test.ts tries what follows from a package without it.
    /* c8 ignore start */
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error
    throw new FST_SSE_IOREDIS_MISSING({ cause: error })
  }
  /* c8 ignore stop */
}
