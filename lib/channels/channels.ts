import type { FastifyBaseLogger, FastifyTypeProvider, FastifyTypeProviderDefault } from 'fastify'
import type { SseSerializer } from '../core/events'
import type { SseMessageOf } from '../protocol/schema-types'
import type { SseStore } from '../stores/store'
import type { ChannelSchemas } from './channel-schemas'
import type { ChannelFilter } from './channel'
import { DEFAULT_SHUTDOWN_RETRY } from '../stream/shutdown-retry'
import { Stats, type SseStats } from '../observe/stats'
import { Channel } from './channel'
import { TagRegistry } from './tags'
import { Steering, presenceKey, type SsePresence } from './steering'
import { SseTagged } from './tagged'
import { FST_SSE_INVALID_CHANNEL } from '../core/errors'
import { describe } from '../core/describe'
import { check } from '../core/checks'

/** Options of a channel, given when it is made: `app.sse.channel(name, { schema })`. */
export interface SseChannelOptions<Schema extends object = object> {
  /**
   * Event schema of the channel's events: their data is serialized by it (compiled once, with the app's
   * serializer compiler), and what it does not declare is dropped. A data schema, or an event map.
   */
  schema?: Schema
}

/** `app.sse`: the channels of one plugin instance, by name, over one store. */
// TypeProvider: the app's type provider (`app.withTypeProvider()`), which types the events of a channel's schema.
export class Channels<TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault> {
  /** The store channels keep their history in. */
  readonly store: SseStore
  private readonly byName = new Map<string, Channel>()
  // Channels closed and replaced whose streams may still be ending (a replay, a publish on its way back).
  private readonly replaced = new Set<Channel>()
  private readonly serializer: SseSerializer
  private readonly log: FastifyBaseLogger
  /** @internal */
  readonly schemas: ChannelSchemas
  private readonly counters: Stats
  /** @internal The open streams with tags, by tag. */
  readonly tags = new TagRegistry()
  /** @internal This instance's part in steering the streams of every instance. */
  readonly steering: Steering
  private readonly askPresence = async (name: string): Promise<SsePresence> => await this.steering.presence(name)

  /**
   * @internal Counters of their own unless given the plugin instance's (a test of the delivery core builds the parts
   * alone); `retry`: the window of the `retry:` a stream closed by its tag gets (the plugin's shutdownRetry).
   */
  constructor (store: SseStore, serializer: SseSerializer, log: FastifyBaseLogger, schemas: ChannelSchemas,
    counters = new Stats(), retry = DEFAULT_SHUTDOWN_RETRY) {
    this.store = store
    this.serializer = serializer
    this.log = log
    this.schemas = schemas
    this.counters = counters
    this.steering = new Steering(store, this.tags, {
      channelFor: (name, schema) => this.channelFor(name, schema),
      existing: (name) => this.existing(name)
    }, retry, log, () => this.subscriberCounts())
    store.attach?.(log)
  }

  /**
   * What this plugin instance has done since it registered, and what is open now: streams (opened, open, closed by
   * reason, refused), events and bytes sent, channels and their subscribers, replays. A new plain object each call.
   */
  stats (): SseStats {
    return this.counters.snapshot()
  }

  /**
   * The channel of that name, made on first use; the same object every time until it is closed. Options apply
   * when it is made: with a `schema`, its events' data is serialized by it.
   */
  channel (name: string): Channel
  channel<const Schema extends object> (name: string, options: SseChannelOptions<Schema>): Channel<SseMessageOf<TypeProvider, Schema>>
  channel (name: string, options?: SseChannelOptions): Channel {
    let channel = this.byName.get(name)
    if (channel === undefined || channel.closed) {
      if (typeof name !== 'string' || name === '') throw new FST_SSE_INVALID_CHANNEL(describe(name))
      if (channel !== undefined) this.keepUntilClosed(channel)
      channel = new Channel(name, this.store, this.schemas.serializerFor(options), this.log, this.counters,
        this.askPresence)
      this.schemas.remember(channel, options)
      this.byName.set(name, channel)
    } else if (options !== undefined) {
      this.schemas.checkSame(channel, options)
    }
    return channel
  }

  /**
   * Every open stream tagged `tag` (`reply.sse(source, { tags })`), on every instance that shares the store: close them,
   * subscribe them to a channel, unsubscribe them, count them. See docs/steering.md.
   */
  tagged (tag: string): SseTagged {
    return new SseTagged(tag, this.steering, this.schemas)
  }

  /**
   * Registers a filter under a name, so that `tagged(tag).subscribe(channel, { filter })` may give it: register it on
   * every instance, as the app starts (the name travels between instances; the function cannot). Returns the filter.
   */
  filter<Filter extends ChannelFilter> (name: string, filter: Filter): Filter {
    check('filter name', typeof name === 'string' && name !== '', 'a non-empty string', name)
    check('filter', typeof filter === 'function', 'a function', filter)
    check('filter name', !this.steering.filters.has(name), 'a name not registered already', name)
    this.steering.filters.register(name, filter)
    return filter
  }

  /** The streams subscribed to each open channel here, by the name it is reported under (those with none left out). */
  private subscriberCounts (): Map<string, number> {
    const counts = new Map<string, number>()
    for (const channel of this.byName.values()) if (channel.subscribers > 0) counts.set(presenceKey(channel.name), channel.subscribers)
    return counts
  }

  /** @internal Closes every channel, once its streams have ended, and then the store. */
  async close (): Promise<void> {
    await this.steering.stop()
    await Promise.all([...this.byName.values(), ...this.replaced].map(async (channel) => await channel.close()))
    this.byName.clear()
    await this.store.close()
  }

  /** The open channel of that name, if there is one. */
  private existing (name: string): Channel | undefined {
    const channel = this.byName.get(name)
    return channel === undefined || channel.closed ? undefined : channel
  }

  /**
   * The channel of that name for an action of another instance: the one open here (its schema must be the same, as
   * JSON), or one made with that schema.
   */
  private channelFor (name: string, schema: object | undefined): Channel {
    const channel = this.existing(name)
    if (channel === undefined) return schema === undefined ? this.channel(name) : this.channel(name, { schema })
    const own = this.schemas.schemaOf(channel)
    check('schema', JSON.stringify(own) === JSON.stringify(schema),
      `the schema channel ${name} was made with on this instance`, schema)
    return channel
  }

  private keepUntilClosed (channel: Channel): void {
    this.replaced.add(channel)
    channel.close().then(() => this.replaced.delete(channel), () => this.replaced.delete(channel))
  }
}
