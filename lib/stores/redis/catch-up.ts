import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { StoreConnection } from './connection'
import type { CatchUpAnswer, Entry, ScriptedClient } from './scripts'
import type { CatchUpQueue, Follow } from './follow'

// Streams one script reads on, at most: a few hundred short reads, not one long one that holds Redis up.
export const CATCH_UP_STREAMS = 256
// Streams one live check's XREAD looks at: whether anything follows each position, about 0.5 µs of Redis a stream,
// and a few ms of the instance's to send; the next XREAD waits for the event loop to have run in between.
export const PROBE_STREAMS = 500
// Entries read of each stream at once: a channel far behind reads on in pages.
export const CATCH_UP_PAGE = 100
// The waits before reading again when Redis could not be asked, doubled up to a limit.
const RETRY_MS = [100, 500, 1000]

/**
 * The reads of what followed channels missed, asked in one tick, sent together: one script call per shard (the
 * streams of a script call must share a slot on a Redis Cluster) and per CATCH_UP_STREAMS channels, on the connection
 * publishes use. A read that fails (Redis away) is tried again; a stream Redis refuses to read (a key that is not a
 * stream, an ACL) is said once, and left to the live check.
 */
export class CatchUps implements CatchUpQueue {
  private readonly connection: StoreConnection
  private readonly groupOf: (follow: Follow) => number
  private readonly log: () => FastifyBaseLogger | undefined
  private readonly unavailable: (reason: string, cause?: unknown) => Error
  private readonly timedOut: () => Error
  private due = new Map<number, Follow[]>()
  private scheduled = false
  private failures = 0
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor (connection: StoreConnection, groupOf: (follow: Follow) => number, log: () => FastifyBaseLogger | undefined,
    unavailable: (reason: string, cause?: unknown) => Error, timedOut: () => Error) {
    this.connection = connection
    this.groupOf = groupOf
    this.log = log
    this.unavailable = unavailable
    this.timedOut = timedOut
  }

  request (follow: Follow): void {
    const group = this.groupOf(follow)
    let follows = this.due.get(group)
    if (follows === undefined) {
      follows = []
      this.due.set(group, follows)
    }
    follows.push(follow)
    if (this.scheduled || this.retryTimer !== undefined) return
    this.scheduled = true
    process.nextTick(() => this.send())
  }

  /**
   * Whether anything follows the position of each of these quiet channels, asked with an XREAD of many streams at a
   * time (a plain read is a few times cheaper for Redis than the script): those with something read on. A read Redis refuses
   * (a key that is not a stream fails it whole) reads on for each, by the script, which says which; one that fails
   * otherwise (Redis away) is left to the next check.
   */
  probe (follows: readonly Follow[]): void {
    const groups = new Map<number, Follow[]>()
    for (const follow of follows) {
      const group = this.groupOf(follow)
      const members = groups.get(group)
      if (members === undefined) groups.set(group, [follow])
      else members.push(follow)
    }
    const reads: Follow[][] = []
    for (const group of groups.values()) {
      for (let from = 0; from < group.length; from += PROBE_STREAMS) reads.push(group.slice(from, from + PROBE_STREAMS))
    }
    const client = this.connection.client as Redis
    const next = (): void => {
      const probed = reads.shift()
      if (probed === undefined || this.closed) return
      this.connection.send(async () => await client.xread('COUNT', 1, 'STREAMS', ...probed.map((follow) => follow.key),
        ...probed.map((follow) => follow.position as string)), this.unavailable, this.timedOut).then((answer) => {
        const moved = new Set((answer ?? []).map(([key]) => key))
        for (const follow of probed) if (moved.has(follow.liveName)) follow.catchUp()
      }, (error: { cause?: Error }) => {
        if (error.cause?.name === 'ReplyError') for (const follow of probed) follow.catchUp()
      })
      setImmediate(next)
    }
    next()
  }

  close (): void {
    this.closed = true
    clearTimeout(this.retryTimer)
  }

  private send (): void {
    this.scheduled = false
    const due = this.due
    this.due = new Map()
    for (const follows of due.values()) {
      const reading = follows.filter((follow) => !follow.ended)
      for (let from = 0; from < reading.length; from += CATCH_UP_STREAMS) this.read(reading.slice(from, from + CATCH_UP_STREAMS))
    }
  }

  private read (follows: Follow[]): void {
    const client = this.connection.client as Redis & ScriptedClient
    const keys = follows.map((follow) => follow.key)
    const positions = follows.map((follow) => follow.position as string)
    this.connection.send(async () => await client.sseCatchUp(keys.length, ...keys, CATCH_UP_PAGE, ...positions),
      this.unavailable, this.timedOut).then((answer) => {
      this.failures = 0
      this.answered(follows, answer)
    }, (error: unknown) => this.failed(follows, error))
  }

  private answered (follows: readonly Follow[], answer: CatchUpAnswer): void {
    const read = new Map<number, [state: number | string, entries: Entry[]]>()
    for (let i = 0; i < answer.length; i += 3) read.set(answer[i] as number - 1, [answer[i + 1] as number | string, answer[i + 2] as Entry[]])
    follows.forEach((follow, i) => {
      const [state, entries] = read.get(i) ?? [0, []]
      if (typeof state === 'string') {
        if (!follow.refused && !follow.ended) {
          follow.refused = true
          this.log()?.error({ err: new Error(state), channel: follow.channel },
            'fastify-sse-h2: reading a channel from Redis failed; its subscribers get nothing from it until it can be read again')
        }
        follow.readRefused()
        return
      }
      if (follow.refused && !follow.ended) {
        follow.refused = false
        this.log()?.info({ channel: follow.channel }, 'fastify-sse-h2: a channel can be read from Redis again')
      }
      follow.caughtUp(entries, state === 1, entries.length === CATCH_UP_PAGE)
    })
  }

  /** Redis could not be asked (away, or too slow): the same reads, again after a wait. */
  private failed (follows: readonly Follow[], error: unknown): void {
    if (this.closed) return
    this.log()?.debug({ err: error }, 'fastify-sse-h2: reading what channels missed from Redis failed; trying again')
    if (this.retryTimer === undefined) {
      const wait = RETRY_MS[Math.min(this.failures++, RETRY_MS.length - 1)]
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined
        this.send()
      }, wait).unref()
    }
    for (const follow of follows) {
      if (!follow.ended) this.request(follow)
    }
  }
}
