import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, Redis, RedisOptions } from 'ioredis'
import type { EventToStore, Replay, SseStore, StoredEvent, StoredEventListener } from '../store'
import { SnapshotEvent } from '../../protocol/snapshot'
import { FST_SSE_STORE_TIMEOUT, FST_SSE_STORE_UNAVAILABLE } from '../../core/errors'
import { DEFAULT_HISTORY_MAX_AGE, DEFAULT_HISTORY_SIZE } from '../../core/defaults'
import { check, isWholeNumberUpTo } from '../../core/checks'
import { requireIoredis } from './ioredis'
import { StoreConnection, type RedisClient } from './connection'
import { COMMANDS, REPLAYS, duplicate, liveConnection, ownOptions } from './connections'
import { RedisKeys } from './keys'
import { entryFields } from './entry'
import { withScripts, type ScriptedClient } from './scripts'
import { Follow } from './follow'
import { CatchUps } from './catch-up'
import { LiveFeed } from './live-feed'
import { ReplayReads } from './replays'
import { RedisControl } from './control'
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
   * Hash tags channels are spread over, and so over a Redis Cluster's nodes. Every instance must use the same number
   * (it is part of the keys).
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
   * Milliseconds between live checks: each subscriber connection must answer a PING, and each followed channel that
   * heard nothing for that long is read on from its stream, so that an event whose live message was lost (a
   * connection that died without a word, an instance of an earlier version publishing) arrives within twice this.
   * @default 5000
   */
  liveCheckInterval?: number
  /**
   * Also close the `client` you gave when the app closes.
   * @default false
   */
  closeClient?: boolean
}

// How long to wait before asking again where a channel stands, when Redis could not say.
const START_RETRY_MS = 500

/** A followed channel, as the store keeps it. */
interface FollowedChannel {
  readonly follow: Follow
  /** Resolved once `follow.position` is known. */
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
 * the Redis stream entry ids (or the publisher's own). Streams keep the history and give the positions; the append
 * script also publishes each event by pub/sub, to the processes subscribed to its channel: a process subscribes to
 * the channels it has subscribers for, on one connection (one per node on a Redis Cluster), and reads a channel's
 * stream only for what it missed. Replays go on a connection of their own.
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
  private readonly liveCheckInterval: number
  private readonly publish: 'PUBLISH' | 'SPUBLISH'
  private readonly keyPrefix: string
  private readonly follows = new Map<string, FollowedChannel>()
  private readonly feed: LiveFeed
  private readonly catchUps: CatchUps
  /** The instances that share this Redis, and the messages between them (steering): see control.ts. */
  readonly control: RedisControl
  private liveCheck: NodeJS.Timeout | undefined
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
    this.liveCheckInterval = options.liveCheckInterval ?? 5000
    check('prefix', typeof prefix === 'string', 'a string', prefix)
    check('shards', isWholeNumberUpTo(shards, 1, 1024), 'a whole number from 1 to 1024', shards)
    check('historySize', isWholeNumberUpTo(this.historySize, 1), 'a whole number, 1 or more', this.historySize)
    check('historyMaxAge', isWholeNumberUpTo(this.historyMaxAge, 0), 'a whole number of milliseconds, 0 or more', this.historyMaxAge)
    check('commandTimeout', isWholeNumberUpTo(this.commandTimeout, 1), 'a whole number of milliseconds, 1 or more', this.commandTimeout)
    check('liveCheckInterval', isWholeNumberUpTo(this.liveCheckInterval, 1), 'a whole number of milliseconds, 1 or more',
      this.liveCheckInterval)
    check('client', (options.client === undefined) !== (options.redis === undefined), 'given, or redis given, not both',
      options.client === undefined ? 'neither' : 'both')
    this.keys = new RedisKeys(prefix, shards)
    let client: RedisClient
    if (options.client !== undefined) {
      this.given = options.client
      this.closeGiven = options.closeClient === true
      client = duplicate(options.client, COMMANDS)
    } else {
      const { Redis: RedisClient } = requireIoredis()
      const own = ownOptions(COMMANDS)
      client = typeof options.redis === 'string' ? new RedisClient(options.redis, own) : new RedisClient({ ...options.redis, ...own })
    }
    this.cluster = client.isCluster
    // Sharded pub/sub on a Cluster: a message goes only to the node of its slot (and its replicas), not to every node.
    this.publish = this.cluster ? 'SPUBLISH' : 'PUBLISH'
    this.keyPrefix = client.options.keyPrefix ?? ''
    this.commands = new StoreConnection(withScripts(client), this.commandTimeout)
    client.on('ready', () => this.markUp())
    client.on('close', () => this.markDown())
    this.replays = new ReplayReads(() => this.replayReads(), this.keys, this.historyMaxAge, readFailed,
      this.timedOut)
    this.feed = new LiveFeed(client, this.keys, (node) => liveConnection(client, node), () => this.log)
    this.catchUps = new CatchUps(this.commands, (follow) => this.cluster ? follow.shard : 0, () => this.log, readFailed,
      this.timedOut)
    this.control = new RedisControl({
      commands: this.commands,
      feed: this.feed,
      keys: this.keys,
      keyPrefix: this.keyPrefix,
      publish: this.publish,
      commandTimeout: this.commandTimeout,
      log: () => this.log,
      unavailable: readFailed,
      timedOut: this.timedOut
    })
  }

  attach (log: FastifyBaseLogger): void {
    this.log = log
  }

  append (channel: string, event: EventToStore): Promise<StoredEvent> {
    const client = this.commands.client as RedisClient & ScriptedClient
    const ownId = event.id ?? ''
    return this.commands.send(async () => await client.sseAppend(this.keys.stream(channel), this.keys.ownIds(channel),
      this.historySize, this.historyMaxAge, ownId, this.publish, ...entryFields(event)), publishFailed,
    () => new FST_SSE_STORE_TIMEOUT(this.commandTimeout)).then((entryId) =>
      new SnapshotEvent(event.id ?? entryId, entryId, event.body, event.snapshot))
  }

  readAfter (channel: string, lastEventId: string): Promise<Replay> {
    const followed = this.follows.get(channel)
    // A replay of a channel followed from now reads on from no earlier than where following began: nothing between.
    if (followed === undefined || followed.follow.position !== undefined) return this.replays.read(channel, lastEventId)
    return this.afterStart(followed).then(async () => await this.replays.read(channel, lastEventId))
  }

  /** As readAfter(), after the event at `position` (a stream's cursor holds positions: `<ms>-0` as `<ms>`). */
  readAfterPosition (channel: string, position: string): Promise<Replay> {
    return this.readAfter(channel, '\n' + (position.includes('-') ? position : `${position}-0`))
  }

  /**
   * The newest entry of the channel's stream, asked at once on the connection publishes use: a publish this process
   * makes after it comes after it. While where the channel's following begins is not known yet, it answers once it
   * is: every entry after it is handed over.
   */
  head (channel: string): Promise<string | undefined> {
    const followed = this.follows.get(channel)
    if (followed?.freshStart !== undefined) return followed.freshStart
    const newest = this.readHead(channel)
    if (followed === undefined || followed.follow.position !== undefined) return newest
    return Promise.all([newest, this.afterStart(followed)]).then(([position]) => {
      const from = followed.startedFrom
      // Asked before this head, following begins no later than it; only after a failed first ask, retried since, can it
      // begin later, and the subscriber then starts there: what came between is not read.
      /* c8 ignore next */
      return from !== undefined && comparePositions(from, position ?? '0-0') > 0 ? from : position
    })
  }

  /**
   * The first listener of a channel subscribes to it (its messages wait) and asks where it stands at once, on the
   * connection publishes use; once both are answered, it reads on from there (what was published before the
   * subscription took effect), then takes the messages.
   */
  listen (channel: string, listener: StoredEventListener): void {
    let followed = this.follows.get(channel)
    if (followed === undefined) {
      followed = this.followed(channel)
      this.follows.set(channel, followed)
      this.feed.add(followed.follow)
      this.startFollowing(followed)
      this.liveCheck ??= setInterval(() => this.checkLive(), this.liveCheckInterval).unref()
    }
    followed.follow.listeners.add(listener)
  }

  unlisten (channel: string, listener: StoredEventListener): void {
    const followed = this.follows.get(channel)
    if (followed === undefined || !followed.follow.listeners.delete(listener) || followed.follow.listeners.size > 0) return
    // No one left here: the channel is no longer subscribed to, and nothing of it is kept.
    this.follows.delete(channel)
    followed.follow.ended = true
    followed.markStarted()
    this.feed.remove(followed.follow)
    if (this.follows.size === 0) this.stopLiveCheck()
  }

  async close (): Promise<void> {
    await this.control.close()
    this.closed = true
    this.stopLiveCheck()
    this.catchUps.close()
    this.feed.stop()
    for (const followed of this.follows.values()) {
      followed.follow.ended = true
      followed.markStarted()
    }
    await Promise.all([this.commands.close(), this.replayConnection?.close()])
    if (this.given !== undefined && this.closeGiven) await new StoreConnection(this.given, this.commandTimeout).close()
  }

  private followed (channel: string): FollowedChannel {
    let markStarted!: () => void
    const started = new Promise<void>((resolve) => { markStarted = resolve })
    const key = this.keys.stream(channel)
    const follow = new Follow(channel, key, this.keyPrefix + key, this.keys.shardOf(channel), this.catchUps)
    return { follow, started, markStarted, freshStart: undefined, startedFrom: undefined }
  }

  /**
   * Follows a channel from its newest entry, asked on the connection publishes use: a publish of this process made
   * after listen() is handed over. Asked again while Redis cannot say.
   */
  private startFollowing (followed: FollowedChannel): void {
    const { follow } = followed
    const head = this.readHead(follow.channel)
    followed.freshStart = head
    queueMicrotask(() => { followed.freshStart = undefined })
    head.then((newest) => {
      if (this.follows.get(follow.channel) !== followed) return
      followed.startedFrom = newest ?? '0-0'
      follow.positioned(followed.startedFrom)
      followed.markStarted()
      // (Timing-dependent in the tests: see retryFollowingLater.)
      /* c8 ignore next */
    }, () => this.retryFollowingLater(followed))
  }

  /**
   * Every liveCheckInterval: each subscriber connection must answer a PING, each channel that heard nothing for half
   * as long is asked whether its stream moved (and read on if it did), and each Redis refused to read is read again.
   */
  private checkLive (): void {
    this.feed.check(this.commandTimeout)
    const now = Date.now()
    // Quiet: nothing for half the interval (at least): a channel looked at by one check is looked at by the next.
    const quietSince = now - this.liveCheckInterval / 2
    const quiet: Follow[] = []
    for (const { follow } of this.follows.values()) {
      if (follow.refused) follow.catchUp()
      else if (follow.quiet && follow.heardAt <= quietSince) {
        follow.heardAt = now
        quiet.push(follow)
      }
    }
    this.catchUps.probe(quiet)
  }

  private stopLiveCheck (): void {
    clearInterval(this.liveCheck)
    this.liveCheck = undefined
  }

  // Redis could not say where the channel stands: asked again after a pause, unless the channel was let go of, or the
  // store closed. Whether the outage tests reach the retry depends on their timing (Redis back within the pause or
  // not): to be covered by a test of its own, a channel followed once Redis is back.
  /* c8 ignore start */
  private retryFollowingLater (followed: FollowedChannel): void {
    const channel = followed.follow.channel
    if (this.follows.get(channel) !== followed || this.closed) return
    setTimeout(() => {
      if (this.follows.get(channel) === followed && !this.closed) this.startFollowing(followed)
    }, START_RETRY_MS)
  }
  /* c8 ignore stop */

  /** Waits, within commandTimeout, until the store knows where a channel's following starts. */
  private async afterStart (followed: FollowedChannel): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis could not say where channel ${followed.follow.channel} stands within ` +
        `${this.commandTimeout} ms`)), this.commandTimeout)
    })
    try {
      await Promise.race([followed.started, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private readHead (channel: string): Promise<string | undefined> {
    const client = this.commands.client as Redis
    return this.commands.send(async () => await client.xrevrange(this.keys.stream(channel), '+', '-', 'COUNT', 1), readFailed,
      this.timedOut).then((entries) => entries[0]?.[0])
  }

  private replayReads (): StoreConnection {
    this.replayConnection ??= new StoreConnection(withScripts(duplicate(this.commands.client, REPLAYS)), this.commandTimeout)
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

function publishFailed (reason: string, cause?: unknown): Error {
  return new FST_SSE_STORE_UNAVAILABLE(reason, { cause })
}

function readFailed (reason: string, cause?: unknown): Error {
  return new Error(reason, { cause })
}
