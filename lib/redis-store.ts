import type { FastifyBaseLogger } from 'fastify'
import type { Redis, RedisOptions } from 'ioredis'
import type { EventToStore, Replay, SseStore, StoredEvent, StoredEventListener } from './store'
import { SnapshotEvent } from './store'
import { FST_SSE_STORE_UNAVAILABLE } from './errors'
import { check, isWholeNumberUpTo } from './options'
import { requireIoredis } from './ioredis'
import { comparePositions } from './position'

export interface RedisStoreOptions {
  /** Your ioredis client. The store duplicates it for its one blocking reader, and leaves it open on close. */
  client?: Redis
  /** Or the options (or URL) of a client for the store to make, and to close with the app. */
  redis?: RedisOptions | string
  /**
   * Prefix of the keys: each channel is the Redis stream `<prefix><channel>`.
   * @default 'sse:'
   */
  prefix?: string
  /**
   * Events each channel keeps for replay, about (Redis trims streams by whole nodes: `MAXLEN ~`).
   * @default 1000
   */
  historySize?: number
  /**
   * Milliseconds an event stays available for replay. `0`: no age limit.
   * @default 300000 (5 minutes)
   */
  historyMaxAge?: number
  /**
   * Milliseconds a publish may wait for Redis before it fails with FST_SSE_STORE_UNAVAILABLE.
   * @default 2000
   */
  commandTimeout?: number
  /**
   * Also close the `client` you gave when the app closes.
   * @default false
   */
  closeClient?: boolean
}

// A stream followed, whose starting point is not known yet.
const NOT_YET = ''
// How long the reader blocks before it looks again at its channels: new channels wake it at once.
const READ_BLOCK_MS = 5000

/**
 * Channels over Redis Streams, for several instances behind a load balancer: a publish on any instance
 * reaches the subscribers of all of them, and a client that reconnects to another instance replays from
 * its Last-Event-ID. Ids are the Redis stream entry ids (or the publisher's own). One blocking reader
 * connection per process reads every channel it has subscribers for.
 */
export class RedisStore implements SseStore {
  // The store's command connection; the reader is a second one. Both are the store's to close.
  private readonly client: Redis
  private readonly given: Redis | undefined
  private readonly closeGiven: boolean = false
  private readonly prefix: string
  private readonly historySize: number
  private readonly historyMaxAge: number
  private readonly commandTimeout: number
  private readonly listeners = new Map<string, Set<StoredEventListener>>()
  // The last entry delivered, per stream key: where the reader goes on from, also after an outage.
  private readonly lastIds = new Map<string, string>()
  private reader: Redis | undefined
  private readerId: number | undefined
  private wakeMissed = false
  private log: FastifyBaseLogger | undefined
  private closed = false
  private down = false
  private readFailing = false
  private wake: (() => void) | undefined
  private ready: Promise<void> | undefined
  private stopWaiting: (() => void) | undefined

  constructor (options: RedisStoreOptions = {}) {
    this.prefix = options.prefix ?? 'sse:'
    this.historySize = options.historySize ?? 1000
    this.historyMaxAge = options.historyMaxAge ?? 300_000
    this.commandTimeout = options.commandTimeout ?? 2000
    check('prefix', typeof this.prefix === 'string', 'a string', this.prefix)
    check('historySize', isWholeNumberUpTo(this.historySize, 1), 'a whole number, 1 or more', this.historySize)
    check('historyMaxAge', isWholeNumberUpTo(this.historyMaxAge, 0), 'a whole number of milliseconds, 0 or more', this.historyMaxAge)
    check('commandTimeout', isWholeNumberUpTo(this.commandTimeout, 1), 'a whole number of milliseconds, 1 or more', this.commandTimeout)
    check('client', (options.client === undefined) !== (options.redis === undefined), 'given, or redis given, not both',
      options.client === undefined ? 'neither' : 'both')
    // The store's own connections, made from yours or from options: commands fail at once while Redis is
    // away (no offline queue, no resend), so that a publish that fails is not sent later behind the caller's back.
    const own: RedisOptions = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, connectionName: 'fastify-sse-h2' }
    if (options.client !== undefined) {
      this.given = options.client
      this.closeGiven = options.closeClient === true
      this.client = options.client.duplicate(own)
    } else {
      const { Redis: RedisClient } = requireIoredis()
      this.client = typeof options.redis === 'string' ? new RedisClient(options.redis, own) : new RedisClient({ ...options.redis, ...own })
    }
    this.client.on('error', noop)
  }

  attach (log: FastifyBaseLogger): void {
    this.log = log
  }

  async append (channel: string, { id, body, snapshot }: EventToStore): Promise<StoredEvent> {
    await this.connected()
    const fields = ['b', body, 'e', snapshot]
    if (id !== undefined) fields.push('i', id)
    const entryId = await this.bounded(
      this.client.xadd(this.key(channel), 'MAXLEN', '~', this.historySize, '*', ...fields), 'XADD') as string
    return new SnapshotEvent(id ?? entryId, entryId, body, snapshot)
  }

  async readAfter (channel: string, lastEventId: string): Promise<Replay> {
    const events = await this.retained(channel)
    // Entries only ever leave a stream from its oldest end: an id not among those retained is too old, or not ours.
    const at = events.findLastIndex((event) => event.id === lastEventId)
    return at === -1 ? { found: false, events } : { found: true, position: events[at].position, events: events.slice(at + 1) }
  }

  /** From the entry at `position` on, when it is retained: one short read for a resume by a stream's cursor. */
  async readAfterPosition (channel: string, position: string): Promise<Replay> {
    await this.connected()
    // An entry older than historyMaxAge is not replayed, though Redis may still hold it.
    if (this.historyMaxAge === 0 || comparePositions(position, String(Date.now() - this.historyMaxAge)) >= 0) {
      const [first, ...after] = await this.bounded(this.client.xrange(this.key(channel), position, '+'), 'XRANGE')
      if (first !== undefined && comparePositions(first[0], position) === 0) {
        return { found: true, position: first[0], events: after.map(([entryId, fields]) => this.toEvent(entryId, fields)) }
      }
    }
    return { found: false, events: await this.retained(channel) }
  }

  /**
   * The newest entry of the channel's stream. Asked on the command connection after the TIME its following starts
   * from: every entry after it is read.
   */
  async head (channel: string): Promise<string | undefined> {
    await this.connected()
    const [newest] = await this.bounded(this.client.xrevrange(this.key(channel), '+', '-', 'COUNT', 1), 'XREVRANGE')
    return newest?.[0]
  }

  listen (channel: string, listener: StoredEventListener): void {
    let set = this.listeners.get(channel)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(channel, set)
    }
    // A channel nobody listened to any more is followed again from now, not from where it was left.
    if (set.size === 0) this.follow(channel)
    set.add(listener)
  }

  unlisten (channel: string, listener: StoredEventListener): void {
    // The set stays, empty: the reader stops reading the channel, and an answer already on its way finds no one.
    this.listeners.get(channel)?.delete(listener)
  }

  async close (): Promise<void> {
    this.closed = true
    this.wake?.()
    this.stopWaiting?.()
    // Not waited for: a read queued for Redis to come back never settles once its connection is dropped.
    this.reader?.disconnect()
    await this.closeConnection(this.client)
    if (this.given !== undefined && this.closeGiven) await this.closeConnection(this.given)
  }

  /**
   * Waits for the client's first connection, within commandTimeout. A client that lost its connection fails at
   * once: ioredis would queue the command until Redis returns, and a publish must fail, not hang.
   */
  private async connected (): Promise<void> {
    if (this.closed) throw new FST_SSE_STORE_UNAVAILABLE('the store is closed')
    const status = this.client.status
    if (status === 'ready') return
    if (status !== 'wait' && status !== 'connecting' && status !== 'connect') {
      throw new FST_SSE_STORE_UNAVAILABLE(`the Redis connection is ${status}`)
    }
    if (status === 'wait') this.client.connect().catch(noop)
    // One listener however many commands wait for the connection; close() lets them all go at once.
    this.ready ??= new Promise<void>((resolve, reject) => {
      this.client.once('ready', () => {
        this.ready = undefined
        resolve()
      })
      this.stopWaiting = () => reject(new Error('the store was closed'))
    })
    await this.bounded(this.ready, 'connecting')
  }

  private key (channel: string): string {
    return this.prefix + channel
  }

  private async retained (channel: string): Promise<StoredEvent[]> {
    await this.connected()
    const entries = await this.bounded(this.client.xrange(this.key(channel), this.oldestKept(), '+'), 'XRANGE')
    return entries.map(([entryId, fields]) => this.toEvent(entryId, fields))
  }

  /** The first entry id still young enough to replay. */
  private oldestKept (): string {
    return this.historyMaxAge > 0 ? `${Date.now() - this.historyMaxAge}-0` : '-'
  }

  private toEvent (entryId: string, fields: string[]): StoredEvent {
    let body = ''
    let snapshot = '{}'
    let id = entryId
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === 'b') body = fields[i + 1]
      else if (fields[i] === 'e') snapshot = fields[i + 1]
      else if (fields[i] === 'i') id = fields[i + 1]
    }
    return new SnapshotEvent(id, entryId, body, snapshot)
  }

  /**
   * Starts delivering a channel's entries from now, by Redis's own clock (TIME): an entry added after that,
   * from any process, has a later id. The reader is woken to add the stream.
   */
  private follow (channel: string): void {
    const key = this.key(channel)
    this.lastIds.set(key, NOT_YET)
    const reader = this.ensureReader()
    // Asked on the connection publishes use: it is answered before any publish made after it. While Redis is
    // away that connection fails at once; the reader's waits for Redis to return, and no publish is taken before.
    this.connected().then(async () => await this.client.time()).catch(async () => await reader.time()).then(async ([seconds, micros]) => {
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
      // From the millisecond before: a few entries older than the subscription, rather than one lost.
      if (this.lastIds.get(key) === NOT_YET) this.lastIds.set(key, `${now - 1}-0`)
      this.wake?.()
      await this.wakeReader()
    }).catch(noop) // The reader's TIME fails only once the store is closed.
  }

  private ensureReader (): Redis {
    if (this.reader !== undefined) return this.reader
    // A connection of its own: XREAD BLOCK holds it. It waits out outages, queueing its reads.
    const reader = this.client.duplicate({
      connectionName: 'fastify-sse-h2:reader', maxRetriesPerRequest: null, enableOfflineQueue: true, autoResendUnfulfilledCommands: true
    })
    this.reader = reader
    reader.on('error', noop)
    reader.on('reconnecting', () => this.markDown())
    reader.on('ready', () => {
      // Each connection has an id of its own. Asked from within 'ready', it goes out before any read is resent.
      reader.client('ID').then((id) => {
        this.readerId = id as number
        // Channels followed before the id was known (several at once: a stream of several channels) are read now.
        if (this.wakeMissed) this.wakeReader().catch(noop)
      }, noop)
      this.markUp()
    })
    // It never rejects: what fails inside is logged there.
    this.readLoop(reader).catch(noop)
    return reader
  }

  private async wakeReader (): Promise<void> {
    // Not woken (Redis is away): the reader looks again within READ_BLOCK_MS anyway.
    this.wakeMissed = this.readerId === undefined
    if (this.readerId !== undefined) await this.client.client('UNBLOCK', this.readerId).catch(noop)
  }

  private async readLoop (reader: Redis): Promise<void> {
    while (!this.closed) {
      const keys: string[] = []
      for (const [channel, listeners] of this.listeners) {
        const key = this.key(channel)
        if (listeners.size > 0 && this.lastIds.get(key) !== NOT_YET) keys.push(key)
      }
      if (keys.length === 0) {
        await new Promise<void>((resolve) => { this.wake = resolve })
        continue
      }
      try {
        const result = await reader.xread('BLOCK', READ_BLOCK_MS, 'STREAMS', ...keys,
          ...keys.map((key) => this.lastIds.get(key) as string))
        for (const [key, entries] of result ?? []) this.deliver(key, entries)
      } catch (error) {
        // Not an outage (the reader waits those out): Redis refused the read, a key of the prefix that is not a
        // stream for one. Said once, then tried again, for the key may be fixed.
        if (this.closed) return
        if (!this.readFailing) this.log?.error({ err: error }, 'fastify-sse-h2: reading channels from Redis failed')
        this.readFailing = true
        await new Promise((resolve) => setTimeout(resolve, 200))
        continue
      }
      this.readFailing = false
    }
  }

  private deliver (key: string, entries: Array<[string, string[]]>): void {
    const listeners = this.listeners.get(key.slice(this.prefix.length)) as Set<StoredEventListener>
    for (const [entryId, fields] of entries) {
      this.lastIds.set(key, entryId)
      const event = this.toEvent(entryId, fields)
      for (const listener of listeners) listener(event)
    }
  }

  private markDown (): void {
    if (this.down) return
    this.down = true
    this.log?.warn('fastify-sse-h2: Redis is unreachable; streams stay open and channels deliver again when it returns')
  }

  private markUp (): void {
    if (!this.down) return
    this.down = false
    this.log?.info('fastify-sse-h2: Redis is back; channels deliver again')
  }

  /** Quits (pending commands are answered first) if Redis answers within commandTimeout; else drops the connection. */
  private async closeConnection (client: Redis): Promise<void> {
    if (client.status === 'ready') await this.bounded(client.quit(), 'QUIT').catch(noop)
    client.disconnect()
  }

  /** A command that fails after commandTimeout instead of waiting for Redis to come back. */
  private async bounded<T> (command: Promise<T>, name: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FST_SSE_STORE_UNAVAILABLE(`${name} took longer than ${this.commandTimeout} ms`)), this.commandTimeout)
    })
    const failed = command.catch((error: Error) => {
      throw new FST_SSE_STORE_UNAVAILABLE(error.message, { cause: error })
    })
    try {
      return await Promise.race([failed, timeout])
    } finally {
      clearTimeout(timer)
    }
  }
}

function noop (): void {}
