import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { StoredEventListener } from '../store'
import { noop, type RedisClient } from './connection'
import type { Entry } from './scripts'
import { entryEvent } from './entry'

/** A channel this process has listeners for, and where the reader goes on from in its stream. */
export interface Follow {
  readonly channel: string
  readonly key: string
  readonly listeners: Set<StoredEventListener>
  /** The last entry read, or the newest one when following began; undefined until the store knows it. */
  position: string | undefined
  /** Redis refused to read it (a key that is not a stream): when to try it again, apart; 0 while it reads. */
  retryAt: number
}

// How long a read blocks before it looks again; a channel followed meanwhile wakes it at once.
const READ_BLOCK_MS = 5000
// Entries a read takes of each stream, at most: a reader far behind catches up in pages.
const READ_COUNT = 1000
// How long a channel whose stream Redis refuses to read is left out before it is tried again.
const FAILED_RETRY_MS = 1000
// The wait after a read failed for no channel in particular (Redis loading, a cluster redirect), doubled up to a limit.
const TRANSIENT_RETRY_MS = [50, 200, 1000]

/**
 * One blocking reader (XREAD BLOCK) for a group of followed channels, on a connection of its own: all of a process's
 * channels on one Redis, the channels of one hash tag (one slot) on a Redis Cluster, where a read of several keys must
 * stay within a slot. It reads only the channels followed, from where each stands, and hands each entry to the
 * channel's listeners. It is woken through a stream of its own, in its group's slot, when a channel is added.
 */
export class ChannelReader {
  readonly wakeKey: string
  private readonly follows = new Map<string, Follow>()
  private readonly connection: RedisClient
  private readonly keyPrefix: string
  private readonly wake: (reader: ChannelReader) => void
  private readonly log: () => FastifyBaseLogger | undefined
  private wakeId = '0-0'
  private wakeScheduled = false
  private stopped = false
  private transientFailures = 0

  constructor (connection: RedisClient, wakeKey: string, wake: (reader: ChannelReader) => void,
    log: () => FastifyBaseLogger | undefined) {
    this.connection = connection
    this.wakeKey = wakeKey
    this.wake = wake
    this.log = log
    this.keyPrefix = connection.options.keyPrefix ?? ''
    connection.on('error', noop)
    // It never rejects: what fails inside is logged there.
    this.run().catch(noop)
  }

  get empty (): boolean {
    return this.follows.size === 0
  }

  /** A channel newly followed: read once started() says from where. */
  add (follow: Follow): void {
    this.follows.set(follow.key, follow)
  }

  /** The channel's position is known: it is read from the next read on. */
  started (follow: Follow): void {
    if (this.follows.get(follow.key) === follow) this.requestWake()
  }

  remove (follow: Follow): void {
    if (this.follows.get(follow.key) === follow) this.follows.delete(follow.key)
  }

  /** Drops the connection; a read on its way is let go (its answer would find no one). */
  stop (): void {
    this.stopped = true
    this.connection.disconnect()
  }

  private requestWake (): void {
    if (this.wakeScheduled) return
    this.wakeScheduled = true
    // Once for every channel added in this tick.
    queueMicrotask(() => {
      this.wakeScheduled = false
      if (!this.stopped) this.wake(this)
    })
  }

  private async run (): Promise<void> {
    const connection = this.connection as Redis
    while (!this.stopped) {
      const reading = new Map<string, Follow>()
      const keys: string[] = []
      const positions: string[] = []
      let failing = false
      for (const follow of this.follows.values()) {
        if (follow.position === undefined) continue
        if (follow.retryAt !== 0) {
          failing = true
          continue
        }
        reading.set(this.keyPrefix + follow.key, follow)
        keys.push(follow.key)
        positions.push(follow.position)
      }
      let result: Array<[key: string, entries: Entry[]]> | null
      try {
        result = await connection.xread('COUNT', READ_COUNT, 'BLOCK', failing ? FAILED_RETRY_MS : READ_BLOCK_MS, 'STREAMS',
          ...keys, this.wakeKey, ...positions, this.wakeId) as typeof result
      } catch (error) {
        if (this.stopped) return
        await this.findFailing([...reading.values()], error)
        continue
      }
      this.transientFailures = 0
      for (const [key, entries] of result ?? []) {
        const follow = reading.get(key)
        if (follow === undefined) this.wakeId = entries[entries.length - 1][0]
        else if (this.follows.get(follow.key) === follow) deliver(follow, entries)
      }
      if (failing) await this.retryFailing()
    }
  }

  /**
   * A read of several channels fails whole when one of them fails (its key holds something else than a stream, an
   * ACL denies it): each is read alone, and those Redis refuses are left out of the reads for a while, so that the
   * others go on. A failure of none of them in particular (Redis loading, a failover) is waited out.
   */
  private async findFailing (follows: Follow[], error: unknown): Promise<void> {
    const refused = await Promise.all(follows.map(async (follow) => await this.probe(follow)))
    if (refused.some(Boolean)) return
    this.log()?.debug({ err: error }, 'fastify-sse-h2: reading channels from Redis failed; trying again')
    const wait = TRANSIENT_RETRY_MS[Math.min(this.transientFailures++, TRANSIENT_RETRY_MS.length - 1)]
    await new Promise((resolve) => setTimeout(resolve, wait))
  }

  private async retryFailing (): Promise<void> {
    const now = Date.now()
    const due = [...this.follows.values()].filter((follow) => follow.retryAt !== 0 && follow.retryAt <= now)
    await Promise.all(due.map(async (follow) => await this.probe(follow)))
  }

  /** Reads one channel without blocking: true if Redis refused it, which is then said once and tried again later. */
  private async probe (follow: Follow): Promise<boolean> {
    const wasFailing = follow.retryAt !== 0
    try {
      const result = await (this.connection as Redis).xread('COUNT', READ_COUNT, 'STREAMS', follow.key, follow.position as string)
      follow.retryAt = 0
      if (this.follows.get(follow.key) === follow) for (const [, entries] of result ?? []) deliver(follow, entries as Entry[])
      if (wasFailing) this.log()?.info({ channel: follow.channel }, 'fastify-sse-h2: a channel can be read from Redis again')
      return false
    } catch (error) {
      // The connection was lost during the probe: the next read goes through the reconnection, and probes again.
      /* c8 ignore next */
      if ((error as Error).name !== 'ReplyError') return false
      follow.retryAt = Date.now() + FAILED_RETRY_MS
      if (!wasFailing) {
        this.log()?.error({ err: error, channel: follow.channel },
          'fastify-sse-h2: reading a channel from Redis failed; its subscribers get nothing from it until it can be read again')
      }
      return true
    }
  }
}

function deliver (follow: Follow, entries: readonly Entry[]): void {
  for (const [id, fields] of entries) {
    follow.position = id
    const event = entryEvent(id, fields)
    for (const listener of follow.listeners) listener(event)
  }
}
