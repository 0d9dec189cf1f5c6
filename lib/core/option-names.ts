import { FST_SSE_INVALID_OPTION } from './errors'
import { describe } from './describe'

// The names each place takes options under: a name not in its list is refused, never ignored, so that a
// misspelt option (`heartbeat: 5000`) fails where it is written.

export const PLUGIN_OPTIONS = [
  'heartbeatInterval', 'retry', 'serializer', 'lastEventIdQuery', 'maxBufferedBytes', 'writeTimeout', 'store',
  'historySize', 'historyMaxAge', 'limits', 'compression', 'shutdownRetry', 'maxStreamAge'
] as const

// What Fastify's register() takes for itself and passes on to every plugin with its options.
export const REGISTER_OPTIONS = ['prefix', 'logLevel', 'logSerializers'] as const

export const LIMITS_OPTIONS = ['maxStreams', 'maxStreamsPerAddress', 'retryAfter'] as const

export const ROUTE_OPTIONS = [
  'heartbeatInterval', 'retry', 'serializer', 'compression', 'maxBufferedBytes', 'writeTimeout', 'negotiate', 'maxStreamAge'
] as const

export const REPLY_OPTIONS = ['serializer', 'retry', 'filter', 'compression', 'tags', 'expiresAt'] as const

export const CHANNEL_OPTIONS = ['schema'] as const

export const SUBSCRIBE_OPTIONS = ['filter'] as const

/** Options known elsewhere, and where they are set instead. */
interface OptionsElsewhere {
  names: readonly string[]
  where: string
}

/**
 * Throws FST_SSE_INVALID_OPTION for the first key of `options` that is not in `known`, naming it and the
 * nearest known name (or where it is set, if it is an option of another place). `where` prefixes the name
 * (`config.sse.`, `limits.`).
 */
export function refuseUnknownOptions (options: object, known: readonly string[], where = '',
  elsewhere?: OptionsElsewhere): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue
    const value = (options as Record<string, unknown>)[name]
    const expected = elsewhere?.names.includes(name) === true
      ? `set in ${elsewhere.where}, not here`
      : `a known option (did you mean ${where}${nearestName(name, known)}?)`
    throw new FST_SSE_INVALID_OPTION(where + name, expected, describe(value))
  }
}

/**
 * The known name closest to `name`: one that holds it or is held by it (`heartbeat`, `heartbeatInterval`),
 * else the fewest edits away, letter case ignored.
 */
export function nearestName (name: string, known: readonly string[]): string {
  const lower = name.toLowerCase()
  let best = known[0]
  let bestScore = Infinity
  for (const candidate of known) {
    const other = candidate.toLowerCase()
    const score = other.includes(lower) || lower.includes(other)
      ? Math.abs(other.length - lower.length) / 100
      : editDistance(lower, other)
    if (score < bestScore) {
      best = candidate
      bestScore = score
    }
  }
  return best
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution))
    }
    previous = current
  }
  return previous[b.length]
}
