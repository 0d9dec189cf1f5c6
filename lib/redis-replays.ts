import type { Redis } from 'ioredis'
import type { Replay, StoredEvent } from './store'
import type { StoreConnection } from './redis-connection'
import type { RedisKeys } from './redis-keys'
import type { Entry, ScriptedClient } from './redis-scripts'
import { entryEvent } from './redis-entry'

// Entries a replay reads with each command: a long replay is several short commands, not one long one.
export const REPLAY_PAGE = 256
// Replays read at once, per process: a reconnect storm waits its turn instead of starving Redis's other clients.
export const REPLAY_CONCURRENCY = 8

interface ReplayBatch {
  readonly channel: string
  readonly lastEventId: string
  readonly replay: Promise<Replay>
  start: () => void
}

/**
 * The replays of one process, read on a connection of their own (publishes never wait behind them), a few at a
 * time, in the order they were asked for. Each costs what the client missed: it starts from the client's position,
 * found by the read script, and reads on in pages. Identical replays asked before the read is sent (the same
 * channel, the same last event id: a storm of clients that had all seen the same event) share that one read; one
 * asked later gets a read of its own, which sees the events stored meanwhile.
 */
export class ReplayReads {
  private readonly connection: () => StoreConnection
  private readonly keys: RedisKeys
  private readonly historyMaxAge: number
  private readonly unavailable: (reason: string, cause?: unknown) => Error
  private readonly timedOut: () => Error
  private readonly queue: ReplayBatch[] = []
  // Batches not sent yet, by channel and last event id.
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
    const name = channel + '\n' + lastEventId
    const queued = this.queued.get(name)
    if (queued !== undefined) return queued.replay
    let start!: () => void
    const started = new Promise<void>((resolve) => { start = resolve })
    const batch: ReplayBatch = { channel, lastEventId, replay: started.then(async () => await this.readAll(channel, lastEventId)), start }
    this.queue.push(batch)
    this.queued.set(name, batch)
    this.next()
    return batch.replay
  }

  private next (): void {
    while (this.reading < REPLAY_CONCURRENCY && this.queue.length > 0) {
      const batch = this.queue.shift() as ReplayBatch
      // From now on, the same replay asked again is read again.
      this.queued.delete(batch.channel + '\n' + batch.lastEventId)
      this.reading++
      const done = (): void => {
        this.reading--
        this.next()
      }
      batch.replay.then(done, done)
      batch.start()
    }
  }

  private async readAll (channel: string, lastEventId: string): Promise<Replay> {
    const connection = this.connection()
    const client = connection.client as Redis & ScriptedClient
    const stream = this.keys.stream(channel)
    const [position, first] = await connection.send(async () => await client.sseReadAfter(stream, this.keys.ownIds(channel),
      lastEventId, REPLAY_PAGE, this.historyMaxAge), this.unavailable, this.timedOut)
    const events: StoredEvent[] = []
    let page = first
    for (;;) {
      for (const [id, fields] of page) events.push(entryEvent(id, fields))
      if (page.length < REPLAY_PAGE) break
      const after = '(' + page[page.length - 1][0]
      page = await connection.send(async () => await client.xrange(stream, after, '+', 'COUNT', REPLAY_PAGE) as Entry[],
        this.unavailable, this.timedOut)
    }
    return position === '' ? { found: false, events } : { found: true, position, events }
  }
}
