import type { FastifySseOptions, SseLimits, SseReplyOptions, SseShutdownRetry } from './types'
import type { SseSerializer } from '../core/events'
import type { SseEncoding } from '../stream/compression'
import { DEFAULT_SHUTDOWN_RETRY, type ShutdownRetry } from '../stream/shutdown-retry'
import { ENCODINGS } from '../stream/compression'
import type { SseStore } from '../stores/store'
import { MemoryStore } from '../stores/memory-store'
import { StreamLimits } from '../stream/stream-limits'
import { check, isWholeNumberUpTo } from '../core/checks'
import { isValidRetry } from '../protocol/framing'
import { LIMITS_OPTIONS, PLUGIN_OPTIONS, REGISTER_OPTIONS, REPLY_OPTIONS, ROUTE_OPTIONS, refuseUnknownOptions } from '../core/option-names'
import type { StreamTiming } from '../stream/stream-groups'

/** The plugin's options once defaults are applied and every value is checked. */
export interface Settings {
  heartbeatInterval: number
  retry: number | undefined
  serializer: SseSerializer
  lastEventIdQuery: string | false
  maxBufferedBytes: number
  writeTimeout: number
  maxStreamAge: number
  store: SseStore
  limits: StreamLimits | undefined
  compression: readonly SseEncoding[] | false
  shutdownRetry: ShutdownRetry
}

const defaults: Omit<Settings, 'store' | 'limits' | 'compression' | 'shutdownRetry'> = {
  heartbeatInterval: 15_000,
  retry: undefined,
  serializer: JSON.stringify,
  lastEventIdQuery: 'lastEventId',
  maxBufferedBytes: 256 * 1024,
  writeTimeout: 30_000,
  maxStreamAge: 0
}

const STORE_METHODS = ['append', 'readAfter', 'listen', 'unlisten', 'close'] as const

// setInterval cannot wait longer than this: it fires at once instead.
const MAX_TIMER_MS = 2 ** 31 - 1
// Tags of one stream: a handful (a user, a team, a session), each a short name.
const MAX_TAGS = 64
const MAX_TAG_LENGTH = 256

/** Applies the defaults and checks every option, so that a bad one fails `register`, not a request. */
export function resolveOptions (options: FastifySseOptions = {}): Settings {
  refuseUnknownOptions(options, [...PLUGIN_OPTIONS, ...REGISTER_OPTIONS])
  const settings = { ...defaults } as Settings
  for (const key of Object.keys(defaults) as Array<keyof typeof defaults>) {
    const value = (options as Record<string, unknown>)[key]
    if (value !== undefined) (settings as unknown as Record<string, unknown>)[key] = value
  }
  checkTiming(settings)
  checkSerializerAndRetry(settings)
  check('lastEventIdQuery', settings.lastEventIdQuery === false ||
    (typeof settings.lastEventIdQuery === 'string' && settings.lastEventIdQuery !== ''),
  'a non-empty string or false', settings.lastEventIdQuery)
  settings.store = resolveStore(options)
  settings.limits = resolveLimits(options.limits)
  settings.compression = resolveCompression(options.compression)
  settings.shutdownRetry = resolveShutdownRetry(options.shutdownRetry)
  return settings
}

function resolveShutdownRetry (retry: SseShutdownRetry | undefined): ShutdownRetry {
  if (retry === undefined) return DEFAULT_SHUTDOWN_RETRY
  check('shutdownRetry', typeof retry === 'object' && retry !== null, 'an object { min, max }', retry)
  const { min, max } = retry
  for (const [name, value] of [['min', min], ['max', max]] as const) {
    check(`shutdownRetry.${name}`, isValidRetry(value), 'a whole number of milliseconds, 0 or more', value)
  }
  check('shutdownRetry.max', max >= min, `at least shutdownRetry.min (${min})`, max)
  return { min, max }
}

function resolveLimits (limits: SseLimits | undefined): StreamLimits | undefined {
  if (limits === undefined) return undefined
  check('limits', typeof limits === 'object' && limits !== null, 'an object', limits)
  refuseUnknownOptions(limits, LIMITS_OPTIONS, 'limits.')
  const { maxStreams = Infinity, maxStreamsPerAddress = Infinity, retryAfter = 5 } = limits
  for (const [name, value] of [['maxStreams', maxStreams], ['maxStreamsPerAddress', maxStreamsPerAddress]] as const) {
    check(`limits.${name}`, value === Infinity || isWholeNumberUpTo(value, 1, Number.MAX_SAFE_INTEGER),
      'a whole number, 1 or more', value)
  }
  check('limits.retryAfter', isWholeNumberUpTo(retryAfter, 0, Number.MAX_SAFE_INTEGER), 'a whole number of seconds, 0 or more',
    retryAfter)
  return new StreamLimits(maxStreams, maxStreamsPerAddress, retryAfter)
}

function resolveStore ({ store, historySize, historyMaxAge }: FastifySseOptions): SseStore {
  if (store === undefined) return new MemoryStore({ historySize, historyMaxAge })
  check('store', typeof store === 'object' && store !== null &&
    STORE_METHODS.every((method) => typeof store[method] === 'function'),
  `an object with ${STORE_METHODS.join(', ')} methods`, store)
  // History limits belong to the store given: two places to set them would be one too many.
  for (const [name, value] of [['historySize', historySize], ['historyMaxAge', historyMaxAge]] as const) {
    check(name, value === undefined, 'unset when a store is given (set the store\'s own limits)', value)
  }
  return store
}

/** The encodings offered, in order of preference, or false. */
export function resolveCompression (compression: boolean | readonly SseEncoding[] | undefined, where = ''):
readonly SseEncoding[] | false {
  if (compression === undefined || compression === false) return false
  if (compression === true) return ENCODINGS
  check(where + 'compression', Array.isArray(compression) && compression.length > 0 &&
    compression.every((encoding) => ENCODINGS.includes(encoding)), `a boolean, or a non-empty array of ${ENCODINGS.map((e) => `'${e}'`).join(', ')}`,
    compression)
  return compression
}

/** Checks the options of a `reply.sse()` call. */
export function checkStreamOptions (options: SseReplyOptions): void {
  refuseUnknownOptions(options, REPLY_OPTIONS, '', { names: ROUTE_OPTIONS, where: 'config.sse of the route' })
  checkSerializerAndRetry(options)
  check('filter', options.filter === undefined || typeof options.filter === 'function', 'a function', options.filter)
  resolveCompression(options.compression)
}

/** The tags of a `reply.sse()` call, checked: each a non-empty string, once. */
export function resolveTags (tags: unknown): readonly string[] | undefined {
  if (tags === undefined) return undefined
  check('tags', Array.isArray(tags) && tags.length <= MAX_TAGS &&
    tags.every((tag) => typeof tag === 'string' && tag !== '' && tag.length <= MAX_TAG_LENGTH),
  `an array of at most ${MAX_TAGS} non-empty strings of at most ${MAX_TAG_LENGTH} characters`, tags)
  const unique = [...new Set(tags as string[])]
  return unique.length === 0 ? undefined : unique
}

/** The `expiresAt` of a `reply.sse()` call, checked: ms since the epoch, or undefined. */
export function resolveExpiresAt (expiresAt: unknown): number | undefined {
  if (expiresAt === undefined) return undefined
  const ms = expiresAt instanceof Date ? expiresAt.getTime() : expiresAt
  check('expiresAt', typeof ms === 'number' && Number.isFinite(ms),
    'a Date, or milliseconds since the epoch (a JWT exp times 1000)', expiresAt)
  return ms as number
}

/** Checks `serializer` and `retry`, set on the plugin, a route or a stream; `where` prefixes their names. */
export function checkSerializerAndRetry (options: { serializer?: unknown, retry?: unknown }, where = ''): void {
  check(where + 'serializer', options.serializer === undefined || typeof options.serializer === 'function',
    'a function', options.serializer)
  check(where + 'retry', options.retry === undefined || isValidRetry(options.retry),
    'a whole number of milliseconds, 0 or more', options.retry)
}

/** Checks the timing of the plugin's streams, or a route's; `where` prefixes the names. */
export function checkTiming (timing: StreamTiming, where = ''): void {
  check(where + 'heartbeatInterval', isWholeNumberUpTo(timing.heartbeatInterval, 0, MAX_TIMER_MS),
    `a whole number of milliseconds from 0 (off) to ${MAX_TIMER_MS}`, timing.heartbeatInterval)
  check(where + 'maxBufferedBytes', isWholeNumberUpTo(timing.maxBufferedBytes, 1, Number.MAX_SAFE_INTEGER),
    'a positive whole number of bytes', timing.maxBufferedBytes)
  check(where + 'writeTimeout', isWholeNumberUpTo(timing.writeTimeout, 0, MAX_TIMER_MS),
    `a whole number of milliseconds from 0 (off) to ${MAX_TIMER_MS}`, timing.writeTimeout)
  check(where + 'maxStreamAge', isWholeNumberUpTo(timing.maxStreamAge, 0),
    'a whole number of milliseconds, 0 (off) or more', timing.maxStreamAge)
}
