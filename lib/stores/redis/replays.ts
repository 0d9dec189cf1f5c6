import type { Redis } from 'ioredis'
import type { Replay, StoredEvent } from '../store'
import { noop, type StoreConnection } from './connection'
import type { RedisKeys } from './keys'
import type { Entry, ScriptedClient } from './scripts'
import { entryEvent } from './entry'
import { comparePositions } from '../../core/position'

// Entries a replay reads with each command: a long replay is several short commands, not one long one.
export const REPLAY_PAGE = 256
// Reads of replays at once, per process: a reconnect storm waits its turn instead of starving Redis's other clients.
const REPLAY_CONCURRENCY = 8

interface Waiter {
  resolve: (replay: Replay) => void
  reject: (error: unknown) => void
}

interface ReplayBatch {
  readonly channel: string
  // Who waits for the replay after each last event id.
  readonly asked: Map<string, Waiter[]>
}

/**
 * The replays of one process, read on a connection of their own (publishes never wait behind them), a few at a
 * time, in the order they were asked for. Each costs what was missed: the read script finds where each client
 * stands, and the read starts after it, in pages. The replays of a channel asked before its read is sent (a storm of
 * clients coming back to this instance) share that one read, from the oldest of their positions: each gets what
 * follows its own. One asked later gets a read of its own, which sees the events stored meanwhile.
 */
export class ReplayReads {
  private readonly connection: () => StoreConnection
  private readonly keys: RedisKeys
  private readonly historyMaxAge: number
  private readonly unavailable: (reason: string, cause?: unknown) => Error
  private readonly timedOut: () => Error
  private readonly queue: ReplayBatch[] = []
  // Batches not sent yet, by channel.
  private readonly queued = new Map<string, ReplayBatch>()
  private reading = 0

  constructor (connection: () => StoreConnection, keys: RedisKeys, historyMaxAge: number,
    unavailable: (reason: string, cause?: unknown) => Error, timedOut: () => Error) {
    this.connection = connection
    this.keys = keys
    this.historyMaxAge = historyMaxAge
    this.unavailable = unavailable
    this.timedOut = timedOut
  }

  read (channel: string, lastEventId: string): Promise<Replay> {
    let batch = this.queued.get(channel)
    if (batch === undefined) {
      batch = { channel, asked: new Map() }
      this.queue.push(batch)
      this.queued.set(channel, batch)
      queueMicrotask(() => this.next())
    }
    let waiting = batch.asked.get(lastEventId)
    if (waiting === undefined) {
      waiting = []
      batch.asked.set(lastEventId, waiting)
    }
    const asked = waiting
    return new Promise<Replay>((resolve, reject) => { asked.push({ resolve, reject }) })
  }

  private next (): void {
    while (this.reading < REPLAY_CONCURRENCY && this.queue.length > 0) {
      const batch = this.queue.shift() as ReplayBatch
      // From now on, a replay of this channel is read again.
      this.queued.delete(batch.channel)
      this.reading++
      this.readBatch(batch).finally(() => {
        this.reading--
        this.next()
      }).catch(noop)
    }
  }

  private async readBatch ({ channel, asked }: ReplayBatch): Promise<void> {
    const lastEventIds = [...asked.keys()]
    let read: { events: StoredEvent[], positions: string[] }
    try {
      read = await this.readAfter(channel, lastEventIds)
    } catch (error) {
      for (const waiting of asked.values()) for (const { reject } of waiting) reject(error)
      return
    }
    const { events, positions } = read
    lastEventIds.forEach((lastEventId, i) => {
      const position = positions[i]
      const replay: Replay = position === ''
        ? { found: false, events }
        : { found: true, position, events: events.slice(firstAfter(events, position)) }
      for (const { resolve } of asked.get(lastEventId) as Waiter[]) resolve(replay)
    })
  }

  private async readAfter (channel: string, lastEventIds: string[]): Promise<{ events: StoredEvent[], positions: string[] }> {
    const connection = this.connection()
    const client = connection.client as Redis & ScriptedClient
    const stream = this.keys.stream(channel)
    const [first, ...positions] = await connection.send(async () => await client.sseReadAfter(stream, this.keys.ownIds(channel),
      REPLAY_PAGE, this.historyMaxAge, ...lastEventIds), this.unavailable, this.timedOut)
    const events: StoredEvent[] = []
    let page = first
    for (;;) {
      for (const [id, fields] of page) events.push(entryEvent(id, fields))
      if (page.length < REPLAY_PAGE) break
      const after = '(' + page[page.length - 1][0]
      page = await connection.send(async () => await client.xrange(stream, after, '+', 'COUNT', REPLAY_PAGE) as Entry[],
        this.unavailable, this.timedOut)
    }
    return { events, positions }
  }
}

/** The index of the first event after `position`, in events ordered by position. */
function firstAfter (events: readonly StoredEvent[], position: string): number {
  let low = 0
  let high = events.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (comparePositions(events[middle].position, position) <= 0) low = middle + 1
    else high = middle
  }
  return low
}
