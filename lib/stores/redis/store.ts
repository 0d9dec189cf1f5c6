import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { randomUUID } from 'node:crypto'
import type { EventToStore, Replay, SseStore, StoredEvent, StoredEventListener } from '../store'
import { SnapshotEvent } from '../../protocol/snapshot'
import { FST_SSE_STORE_TIMEOUT, FST_SSE_STORE_UNAVAILABLE } from '../../core/errors'
import { DEFAULT_HISTORY_MAX_AGE, DEFAULT_HISTORY_SIZE } from '../../core/defaults'
import { check, isWholeNumberUpTo } from '../../core/checks'
import { requireIoredis } from './ioredis'
import { StoreConnection, noop, type RedisClient } from './connection'
import { RedisKeys } from './keys'
import { entryFields } from './entry'
import { withScripts, type ScriptedClient } from './scripts'
import { ChannelReader, type Follow } from './reader'
import { ReplayReads } from './replays'
import { comparePositions } from '../../core/position'

export interface RedisStoreOptions {
  /**
   * Your ioredis client, a `Redis` or a `Cluster`. The store makes its own connections from it (`duplicate()`), and
   * leaves it open on close.
   */
  client?: Redis | Cluster
  /** Or the options (or URL) of a client of one Redis for the store to make, and to close with the app. */
  redis?: RedisOptions | string
  /**
   * Prefix of the keys: each channel is the Redis stream `<prefix>{<shard tag>}<channel>`.
   * @default 'sse:'
   */
  prefix?: string
  /**
   * Hash tags channels are spread over: on a Redis Cluster, each process reads the channels it follows with one
   * connection per shard that holds some. Every instance must use the same number (it is part of the keys).
   * @default 16
   */
  shards?: number
  /**
   * Events each channel keeps for replay, about (Redis trims streams by whole nodes: `MAXLEN ~`).
   * @default 1000
   */
  historySize?: number
  /**
   * Milliseconds an event stays available for replay, by Redis's clock; a channel's keys expire that long after its
   * last event. `0`: no age limit, and keys that stay.
   * @default 300000 (5 minutes)
   */
  historyMaxAge?: number
  /**
   * Milliseconds a command may wait for Redis: a publish then fails with FST_SSE_STORE_TIMEOUT, a new stream is
   * refused with FST_SSE_CHANNEL_UNAVAILABLE.
   * @default 2000
   */
  commandTimeout?: number
  /**
   * Also close the `client` you gave when the app closes.
   * @default false
   */
  closeClient?: boolean
}

// How long to wait before asking again where a channel stands, when Redis could not say.
const START_RETRY_MS = 500
// The names the store's connections have in CLIENT LIST.
const COMMANDS = 'fastify-sse-h2'
const REPLAYS = 'fastify-sse-h2:replay'
const READER = 'fastify-sse-h2:reader'
// A reader's wake stream outlives a process that ended without closing by this long, at most.
const WAKE_TTL_MS = 60 * 60_000

/** A followed channel, as the store keeps it. */
interface FollowedChannel extends Follow {
  readonly group: number
  /** Resolved once `position` is known. */
  readonly started: Promise<void>
  markStarted: () => void
  /** The read of where it starts, sent in this tick: a subscriber of the same tick starts there too. */
  freshStart: Promise<string | undefined> | undefined
  /** Where its following began, once known ('0-0': an empty stream). */
  startedFrom: string | undefined
}

/**
 * Channels over Redis Streams, for several instances behind a load balancer: a publish on any instance reaches the
 * subscribers of all of them, and a client that reconnects to another instance replays from its Last-Event-ID. Ids are
 * the Redis stream entry ids (or the publisher's own). A process reads only the channels it has subscribers for, with
 * one blocking reader (one per shard on a Redis Cluster); replays go on a connection of their own.
 */
export class RedisStore implements SseStore {
  private readonly commands: StoreConnection
  private replayConnection: StoreConnection | undefined
  private readonly replays: ReplayReads
  private readonly given: RedisClient | undefined
  private readonly closeGiven: boolean = false
  private readonly cluster: boolean
  private readonly keys: RedisKeys
  private readonly historySize: number
  private readonly historyMaxAge: number
  private readonly commandTimeout: number
  private readonly follows = new Map<string, FollowedChannel>()
  // By group: every channel in group 0 on one Redis; a group per shard on a Redis Cluster.
  private readonly readers = new Map<number, ChannelReader>()
  private log: FastifyBaseLogger | undefined
  private closed = false
  private down = false
  private everReady = false
  // The failure of a command other than a publish that Redis did not answer in time.
  private readonly timedOut = (): Error => new Error(`Redis did not answer within commandTimeout (${this.commandTimeout} ms)`)

  constructor (options: RedisStoreOptions = {}) {
    const prefix = options.prefix ?? 'sse:'
    const shards = options.shards ?? 16
    this.historySize = options.historySize ?? DEFAULT_HISTORY_SIZE
    this.historyMaxAge = options.historyMaxAge ?? DEFAULT_HISTORY_MAX_AGE
    this.commandTimeout = options.commandTimeout ?? 2000
    check('prefix', typeof prefix === 'string', 'a string', prefix)
    check('shards', isWholeNumberUpTo(shards, 1, 1024), 'a whole number from 1 to 1024', shards)
    check('historySize', isWholeNumberUpTo(this.historySize, 1), 'a whole number, 1 or more', this.historySize)
    check('historyMaxAge', isWholeNumberUpTo(this.historyMaxAge, 0), 'a whole number of milliseconds, 0 or more', this.historyMaxAge)
    check('commandTimeout', isWholeNumberUpTo(this.commandTimeout, 1), 'a whole number of milliseconds, 1 or more', this.commandTimeout)
    check('client', (options.client === undefined) !== (options.redis === undefined), 'given, or redis given, not both',
      options.client === undefined ? 'neither' : 'both')
    this.keys = new RedisKeys(prefix, shards)
    let client: RedisClient
    if (options.client !== undefined) {
      this.given = options.client
      this.closeGiven = options.closeClient === true
      client = duplicate(options.client, COMMANDS, false)
    } else {
      const { Redis: RedisClient } = requireIoredis()
      const own = ownOptions(COMMANDS, false)
      client = typeof options.redis === 'string' ? new RedisClient(options.redis, own) : new RedisClient({ ...options.redis, ...own })
    }
    this.cluster = client.isCluster
    this.commands = new StoreConnection(withScripts(client), this.commandTimeout)
    client.on('ready', () => this.markUp())
    client.on('close', () => this.markDown())
    this.replays = new ReplayReads(() => this.replayReads(), this.keys, this.historyMaxAge, readFailed,
      this.timedOut)
  }

  attach (log: FastifyBaseLogger): void {
    this.log = log
  }

  append (channel: string, event: EventToStore): Promise<StoredEvent> {
    const client = this.commands.client as RedisClient & ScriptedClient
    const ownId = event.id ?? ''
    return this.commands.send(async () => await client.sseAppend(this.keys.stream(channel), this.keys.ownIds(channel),
      this.historySize, this.historyMaxAge, ownId, ...entryFields(event)), publishFailed,
    () => new FST_SSE_STORE_TIMEOUT(this.commandTimeout)).then((entryId) =>
      new SnapshotEvent(event.id ?? entryId, entryId, event.body, event.snapshot))
  }

  readAfter (channel: string, lastEventId: string): Promise<Replay> {
    const follow = this.follows.get(channel)
    // A replay of a channel followed from now reads on from no earlier than where following began: nothing between.
    if (follow === undefined || follow.position !== undefined) return this.replays.read(channel, lastEventId)
    return this.afterStart(follow).then(async () => await this.replays.read(channel, lastEventId))
  }

  /** As readAfter(), after the event at `position` (a stream's cursor holds positions: `<ms>-0` as `<ms>`). */
  readAfterPosition (channel: string, position: string): Promise<Replay> {
    return this.readAfter(channel, '\n' + (position.includes('-') ? position : `${position}-0`))
  }

  /**
   * The newest entry of the channel's stream, asked at once on the connection publishes use: a publish this process
   * makes after it comes after it. While where the channel's following begins is not known yet, it answers once it
   * is: the reader reads every entry after it.
   */
  head (channel: string): Promise<string | undefined> {
    const follow = this.follows.get(channel)
    if (follow?.freshStart !== undefined) return follow.freshStart
    const newest = this.readHead(channel)
    if (follow === undefined || follow.position !== undefined) return newest
    return Promise.all([newest, this.afterStart(follow)]).then(([position]) => {
      const from = follow.startedFrom
      // Asked before this head, following begins no later than it; only after a failed first ask, retried since, can it
      // begin later, and the subscriber then starts there: what came between is not read.
      /* c8 ignore next */
      return from !== undefined && comparePositions(from, position ?? '0-0') > 0 ? from : position
    })
  }

  listen (channel: string, listener: StoredEventListener): void {
    let follow = this.follows.get(channel)
    if (follow === undefined) {
      follow = this.follow(channel)
      this.follows.set(channel, follow)
      this.readerOf(follow.group).add(follow)
      this.startFollowing(follow)
    }
    follow.listeners.add(listener)
  }

  unlisten (channel: string, listener: StoredEventListener): void {
    const follow = this.follows.get(channel)
    if (follow === undefined || !follow.listeners.delete(listener) || follow.listeners.size > 0) return
    // No one left here: the channel is no longer read, and nothing of it is kept.
    this.follows.delete(channel)
    follow.markStarted()
    const reader = this.readers.get(follow.group) as ChannelReader
    reader.remove(follow)
    if (reader.empty) this.stopReader(follow.group, reader)
  }

  async close (): Promise<void> {
    this.closed = true
    for (const [group, reader] of this.readers) this.stopReader(group, reader)
    for (const follow of this.follows.values()) follow.markStarted()
    await Promise.all([this.commands.close(), this.replayConnection?.close()])
    if (this.given !== undefined && this.closeGiven) await new StoreConnection(this.given, this.commandTimeout).close()
  }

  private follow (channel: string): FollowedChannel {
    let markStarted!: () => void
    const started = new Promise<void>((resolve) => { markStarted = resolve })
    return {
      channel,
      key: this.keys.stream(channel),
      group: this.cluster ? this.keys.shardOf(channel) : 0,
      listeners: new Set(),
      position: undefined,
      retryAt: 0,
      started,
      markStarted,
      freshStart: undefined,
      startedFrom: undefined
    }
  }

  /**
   * Follows a channel from its newest entry, asked on the connection publishes use: a publish of this process made
   * after listen() is read. Asked again while Redis cannot say.
   */
  private startFollowing (follow: FollowedChannel): void {
    const head = this.readHead(follow.channel)
    follow.freshStart = head
    queueMicrotask(() => { follow.freshStart = undefined })
    head.then((newest) => {
      if (this.follows.get(follow.channel) !== follow) return
      follow.position = newest ?? '0-0'
      follow.startedFrom = follow.position
      follow.markStarted()
      this.readers.get(follow.group)?.started(follow)
      // (Timing-dependent in the tests: see retryFollowingLater.)
      /* c8 ignore next */
    }, () => this.retryFollowingLater(follow))
  }

  // Redis could not say where the channel stands: asked again after a pause, unless the channel was let go of, or the
  // store closed. Whether the outage tests reach the retry depends on their timing (Redis back within the pause or
  // not): to be covered by a test of its own, a channel followed once Redis is back.
  /* c8 ignore start */
  private retryFollowingLater (follow: FollowedChannel): void {
    if (this.follows.get(follow.channel) !== follow || this.closed) return
    setTimeout(() => {
      if (this.follows.get(follow.channel) === follow && !this.closed) this.startFollowing(follow)
    }, START_RETRY_MS)
  }
  /* c8 ignore stop */

  /** Waits, within commandTimeout, until the store knows where a channel's following starts. */
  private async afterStart (follow: FollowedChannel): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis could not say where channel ${follow.channel} stands within ` +
        `${this.commandTimeout} ms`)), this.commandTimeout)
    })
    try {
      await Promise.race([follow.started, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private readHead (channel: string): Promise<string | undefined> {
    const client = this.commands.client as Redis
    return this.commands.send(async () => await client.xrevrange(this.keys.stream(channel), '+', '-', 'COUNT', 1), readFailed,
      this.timedOut).then((entries) => entries[0]?.[0])
  }

  private readerOf (group: number): ChannelReader {
    let reader = this.readers.get(group)
    if (reader === undefined) {
      const connection = duplicate(this.commands.client, READER, true)
      reader = new ChannelReader(connection, this.keys.wake(group % this.keys.shards, randomUUID()), (woken) => this.wake(woken),
        () => this.log)
      this.readers.set(group, reader)
    }
    return reader
  }

  private stopReader (group: number, reader: ChannelReader): void {
    this.readers.delete(group)
    reader.stop()
    const client = this.commands.client as Redis
    if (!this.closed) this.commands.send(async () => await client.del(reader.wakeKey), readFailed, this.timedOut).catch(noop)
  }

  /** Wakes a reader blocked in a read that does not have a channel added since: it reads it at once. */
  private wake (reader: ChannelReader): void {
    const client = this.commands.client as Redis
    // While Redis is away, it fails: the reader looks again at its channels once its read is answered.
    this.commands.send(async () => await Promise.all([client.xadd(reader.wakeKey, 'MAXLEN', 1, '*', 'w', '1'),
      client.pexpire(reader.wakeKey, WAKE_TTL_MS)]), readFailed, this.timedOut).catch(noop)
  }

  private replayReads (): StoreConnection {
    this.replayConnection ??= new StoreConnection(withScripts(duplicate(this.commands.client, REPLAYS, false)), this.commandTimeout)
    return this.replayConnection
  }

  private markDown (): void {
    if (this.down || !this.everReady || this.closed) return
    this.down = true
    this.log?.warn('fastify-sse-h2: Redis is unreachable; streams stay open and channels deliver again when it returns')
  }

  private markUp (): void {
    this.everReady = true
    if (!this.down) return
    this.down = false
    this.log?.info('fastify-sse-h2: Redis is back; channels deliver again')
  }
}

/** The store's options for a connection of its own. */
function ownOptions (name: string, waits: boolean): RedisOptions {
  // A reader waits out outages, queueing its read, which ioredis sends again once Redis is back. Other connections
  // fail their commands at once while Redis is away (no offline queue, no resend), so that a publish that failed is
  // not sent later behind the caller's back.
  return waits
    ? { connectionName: name, maxRetriesPerRequest: null, enableOfflineQueue: true, autoResendUnfulfilledCommands: true }
    : { connectionName: name, enableOfflineQueue: false, autoResendUnfulfilledCommands: false }
}

/** A connection of the store's own, made from a client: one Redis, or a Cluster (whose node connections get the name). */
function duplicate (client: RedisClient, name: string, waits: boolean): RedisClient {
  const own = ownOptions(name, waits)
  if (!client.isCluster) return (client as Redis).duplicate(own)
  const cluster = client as Cluster
  // A Cluster without its offline queue refuses a command for a node whose connection is still being made, and sends
  // it again later to another node, behind the commands after it: publishes of one channel would be stored out of
  // order. Its node connections queue until connected (ioredis always gives them an offline queue, and no reconnect:
  // a lost node's commands fail and go to the node that serves the slot now); the store's connection still fails
  // commands at once while the Cluster is away.
  return cluster.duplicate([], {
    enableOfflineQueue: true,
    redisOptions: { ...cluster.options.redisOptions, connectionName: name, autoResendUnfulfilledCommands: own.autoResendUnfulfilledCommands }
  })
}

function publishFailed (reason: string, cause?: unknown): Error {
  return new FST_SSE_STORE_UNAVAILABLE(reason, { cause })
}

function readFailed (reason: string): Error {
  return new Error(reason)
}
