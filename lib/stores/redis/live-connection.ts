import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { LiveChannel } from './follow'
import { noop } from './connection'

/**
 * One subscriber connection: to the one Redis (SUBSCRIBE), or to one node of a Redis Cluster (SSUBSCRIBE, sharded
 * pub/sub: a node delivers the messages of the slots it serves). It is subscribed to exactly the channels it is
 * given, asked for together once a tick (on a Cluster, a command per slot), and confirms each subscription to its
 * channel once Redis has. When the connection drops, each channel is told its subscription is lost; once it is back,
 * it subscribes to all of them again (ioredis's own resubscribing is off: the channels must know when it took effect).
 */
export class LiveConnection {
  readonly connection: Redis
  private readonly sharded: boolean
  private readonly moved: (connection: LiveConnection, error?: Error) => void
  private readonly log: () => FastifyBaseLogger | undefined
  private readonly channels = new Map<string, LiveChannel>()
  // Asked for in this tick, by name: its shard.
  private toSubscribe = new Map<string, number>()
  private toUnsubscribe = new Map<string, number>()
  private flushScheduled = false
  private wasReady = false
  private stopped = false

  /**
   * `moved`: called when Redis says a slot of this connection's channels is served elsewhere (a MOVED answer, or the
   * node letting go of a slot's subscriptions): the caller finds where, and gives the channels again.
   */
  constructor (connection: Redis, sharded: boolean, moved: (connection: LiveConnection, error?: Error) => void,
    log: () => FastifyBaseLogger | undefined) {
    this.connection = connection
    this.sharded = sharded
    this.moved = moved
    this.log = log
    connection.on('error', noop)
    connection.on('ready', () => {
      this.wasReady = true
      this.subscribe(new Map(Array.from(this.channels.values(), (channel) => [channel.liveName, channel.shard])))
    })
    connection.on('close', () => {
      if (!this.wasReady) return
      this.wasReady = false
      for (const channel of this.channels.values()) channel.unsubscribed()
    })
    // ioredis's word for a node that let go of the subscriptions of a slot it no longer serves (SUNSUBSCRIBE unasked).
    connection.on('moved', () => this.moved(this))
    const deliver = (name: string, text: string): void => this.channels.get(name)?.message(text)
    connection.on(sharded ? 'smessage' : 'message', deliver)
  }

  get empty (): boolean {
    return this.channels.size === 0
  }

  add (channel: LiveChannel): void {
    this.channels.set(channel.liveName, channel)
    this.toUnsubscribe.delete(channel.liveName)
    this.toSubscribe.set(channel.liveName, channel.shard)
    this.schedule()
  }

  remove (channel: LiveChannel): void {
    this.channels.delete(channel.liveName)
    this.toSubscribe.delete(channel.liveName)
    this.toUnsubscribe.set(channel.liveName, channel.shard)
    this.schedule()
  }

  /** Subscribes again to every channel it holds (Redis may have let go of some), each told once it took effect. */
  resubscribe (): void {
    for (const channel of this.channels.values()) this.toSubscribe.set(channel.liveName, channel.shard)
    this.schedule()
  }

  /**
   * Whether Redis answers on it within `timeoutMs`: if it does not, the connection is dropped and made again, its
   * channels subscribed again (a connection that died without a word delivers nothing, and says nothing).
   */
  check (timeoutMs: number): void {
    if (this.connection.status !== 'ready') return
    let answered = false
    const timer = setTimeout(() => {
      if (!answered && !this.stopped) this.connection.disconnect(true)
    }, timeoutMs)
    this.connection.ping().catch(noop).finally(() => {
      answered = true
      clearTimeout(timer)
    })
  }

  stop (): void {
    this.stopped = true
    this.connection.disconnect()
  }

  private schedule (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    process.nextTick(() => {
      this.flushScheduled = false
      // Not connected: all of them are subscribed once it is ready.
      if (this.connection.status !== 'ready') {
        this.toSubscribe.clear()
        this.toUnsubscribe.clear()
        return
      }
      const subscribe = this.toSubscribe
      const unsubscribe = this.toUnsubscribe
      this.toSubscribe = new Map()
      this.toUnsubscribe = new Map()
      for (const names of this.bySlot(unsubscribe)) {
        (this.sharded ? this.connection.sunsubscribe(...names) : this.connection.unsubscribe(...names)).catch(noop)
      }
      this.subscribe(subscribe)
    })
  }

  private subscribe (names: ReadonlyMap<string, number>): void {
    for (const slotNames of this.bySlot(names)) this.subscribeTo(slotNames.map((name) => this.channels.get(name) as LiveChannel))
  }

  /**
   * Each is told once its subscription took effect (one let go of meanwhile, too: it has ended). A subscription Redis
   * refuses (an ACL that denies a channel) fails whole: each channel is then subscribed to alone, and one refused is
   * said, and left to the live check.
   */
  private subscribeTo (channels: readonly LiveChannel[]): void {
    const names = channels.map((channel) => channel.liveName)
    const subscribing = this.sharded ? this.connection.ssubscribe(...names) : this.connection.subscribe(...names)
    subscribing.then(() => {
      for (const channel of channels) channel.subscribed()
    }, (error: Error) => {
      // Stopped, or the connection dropped meanwhile: all of them are subscribed again once it is ready.
      if (this.stopped || this.connection.status !== 'ready') return
      if (error.message.startsWith('MOVED ')) this.moved(this, error)
      else if (channels.length > 1) for (const channel of channels) this.subscribeTo([channel])
      else {
        this.log()?.error({ err: error, channel: channels[0].channel },
          'fastify-sse-h2: Redis refused a subscription to a channel; its events come by the live check alone')
        channels[0].subscriptionRefused()
      }
    })
  }

  /** The names (with their shards) by slot on a Cluster, where a sharded subscription stays within a slot; else all. */
  private bySlot (names: ReadonlyMap<string, number>): string[][] {
    if (names.size === 0) return []
    if (!this.sharded) return [[...names.keys()]]
    const groups = new Map<number, string[]>()
    for (const [name, shard] of names) {
      let group = groups.get(shard)
      if (group === undefined) {
        group = []
        groups.set(shard, group)
      }
      group.push(name)
    }
    return [...groups.values()]
  }
}
