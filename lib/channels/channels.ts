import type { FastifyBaseLogger, FastifyTypeProvider, FastifyTypeProviderDefault } from 'fastify'
import type { SseSerializer } from '../core/events'
import type { SseMessageOf } from '../protocol/schema-types'
import type { SseStore } from '../stores/store'
import type { ChannelSchemas } from './channel-schemas'
import { Stats, type SseStats } from '../observe/stats'
import { Channel } from './channel'
import { FST_SSE_INVALID_CHANNEL } from '../core/errors'
import { describe } from '../core/describe'

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

  /** @internal Counters of their own unless given the plugin instance's (a test of the delivery core builds the parts alone). */
  constructor (store: SseStore, serializer: SseSerializer, log: FastifyBaseLogger, schemas: ChannelSchemas,
    counters = new Stats()) {
    this.store = store
    this.serializer = serializer
    this.log = log
    this.schemas = schemas
    this.counters = counters
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
      channel = new Channel(name, this.store, this.schemas.serializerFor(options), this.log, this.counters)
      this.schemas.remember(channel, options)
      this.byName.set(name, channel)
    } else if (options !== undefined) {
      this.schemas.checkSame(channel, options)
    }
    return channel
  }

  /** @internal Closes every channel, once its streams have ended, and then the store. */
  async close (): Promise<void> {
    await Promise.all([...this.byName.values(), ...this.replaced].map(async (channel) => await channel.close()))
    this.byName.clear()
    await this.store.close()
  }

  private keepUntilClosed (channel: Channel): void {
    this.replaced.add(channel)
    channel.close().then(() => this.replaced.delete(channel), () => this.replaced.delete(channel))
  }
}
