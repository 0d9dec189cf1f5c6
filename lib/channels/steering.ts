import type { FastifyBaseLogger } from 'fastify'
import type { ControlMember, ControlMessage, ControlResult, SseStore, SseStoreControl } from '../stores/store'
import type { ShutdownRetry } from '../stream/shutdown-retry'
import type { Channel, ChannelFilter } from './channel'
import type { TagRegistry } from './tags'
import { MemoryControl } from '../stores/memory-control'
import { drawRetry } from '../stream/shutdown-retry'
import { FST_SSE_CONTROL_UNAVAILABLE, FST_SSE_STREAM_ENDED } from '../core/errors'

/**
 * How long an action waits for each instance's answer, and a tagged stream for its instance to join the others (its
 * first). An instance that has not answered by then is named in the result: one gone without a word (SIGKILL) is
 * waited for until its place lapses (the store's `leaseMs`: 3 s on Redis).
 */
export const STEER_TIMEOUT_MS = 2000

/** What `tagged(tag).close()`, `subscribe()` and `unsubscribe()` resolve to. */
export interface SseSteerResult {
  /** Streams the action was applied to, on every instance that answered. */
  streams: number
  /**
   * The instances (their ids in the store) that did not answer within 2 s: each may have applied the action or not
   * (gone, cut from the store for a moment, or too busy). Each action may be sent again: applying it twice does nothing more.
   */
  unanswered: string[]
}

/** What `channel.presence()` resolves to. */
export interface SsePresence {
  /**
   * Streams subscribed to the channel, on every instance that shares the store, as each last reported (a second ago
   * at the most over Redis); an instance gone without a word counts no more within 3 s.
   */
  subscribers: number
}

/** What steering needs of the plugin instance's channels. */
export interface SteeredChannels {
  /** The channel of that name for an action from another instance: made (with that schema) if it is not open here. */
  channelFor: (name: string, schema: object | undefined) => Channel
  /** The open channel of that name, if there is one. */
  existing: (name: string) => Channel | undefined
}

/** An action, as it travels between instances. */
type Action =
  | { type: 'close', tag: string }
  | { type: 'subscribe', tag: string, channel: string, schema?: object, filter?: string }
  | { type: 'unsubscribe', tag: string, channel: string }
  | { type: 'count', tag: string }

/**
 * One plugin instance's part in steering: it joins the instances that share the store (its `control`; a store without
 * one: this instance alone), applies to its own tagged streams every action any of them sends, and sends actions.
 */
export class Steering {
  /** Filters that tagged subscriptions name, registered with `app.sse.filter()`: a function cannot travel. */
  readonly filters = new SteeringFilters()
  private readonly control: SseStoreControl
  private readonly tags: TagRegistry
  private readonly channels: SteeredChannels
  private readonly retry: ShutdownRetry
  private readonly log: FastifyBaseLogger
  private joining: Promise<ControlMember> | undefined
  // Set once joined.
  private joined: ControlMember | undefined
  // Counts asked for while the same is on its way share its answer.
  private readonly asking = new Map<string, Promise<ControlResult>>()
  private stopped = false
  private readonly stopReporting: () => void

  /**
   * `channels`' subscriber counts are reported to the store (`subscribers()`: by channel name), for every instance's
   * `presence()`.
   */
  constructor (store: SseStore, tags: TagRegistry, channels: SteeredChannels, retry: ShutdownRetry, log: FastifyBaseLogger,
    subscribers: () => ReadonlyMap<string, number>) {
    this.control = store.control ?? new MemoryControl()
    this.tags = tags
    this.channels = channels
    this.retry = retry
    this.log = log
    this.stopReporting = this.control.report(subscribers)
  }

  /**
   * Undefined once this instance is one the others reach; until then (its first tagged stream, its first action), what
   * resolves once it is, or could not be within STEER_TIMEOUT_MS: a tagged stream is answered then, so that every action
   * sent after it opened reaches it.
   */
  ready (): Promise<void> | undefined {
    if (this.joined !== undefined) return undefined
    return bounded(this.member()).then(() => {}, (error: unknown) => {
      this.log.debug({ err: error }, 'fastify-sse-h2: a tagged stream opened before its instance could join the others')
    })
  }

  /**
   * Leaves the instances (they no longer wait for this one), and stops reporting its counts. A join still on its way
   * leaves once it is done.
   */
  async stop (): Promise<void> {
    this.stopped = true
    this.stopReporting()
    await this.joined?.leave()
  }

  /** Sends an action to every instance; resolves once each has answered, or after STEER_TIMEOUT_MS. */
  async send (action: Action): Promise<ControlResult> {
    try {
      const member = await bounded(this.member())
      return await member.send(action as unknown as ControlMessage, STEER_TIMEOUT_MS)
    } catch (error) {
      throw new FST_SSE_CONTROL_UNAVAILABLE((error as Error).message, { cause: error })
    }
  }

  /** Streams subscribed to the channel of that name on every instance, as they last reported. */
  async presence (name: string): Promise<SsePresence> {
    try {
      return { subscribers: await this.control.sum(presenceKey(name)) }
    } catch (error) {
      throw new FST_SSE_CONTROL_UNAVAILABLE((error as Error).message, { cause: error })
    }
  }

  /** As send(), for what only reads: asked while the same is on its way, it shares its answer. */
  async ask (action: Action, key: string): Promise<ControlResult> {
    let asking = this.asking.get(key)
    if (asking === undefined) {
      asking = this.send(action).finally(() => this.asking.delete(key))
      this.asking.set(key, asking)
    }
    return await asking
  }

  private async member (): Promise<ControlMember> {
    if (this.joining === undefined) {
      const joining = this.control.join((message) => this.apply(message as unknown as Action)).then(async (member) => {
        // Closed while it joined: it leaves at once.
        if (this.stopped) await member.leave()
        else this.joined = member
        return member
      })
      this.joining = joining
      joining.catch((error: unknown) => {
        // Asked again at the next action.
        if (this.joining === joining) this.joining = undefined
        this.log.error({ err: error }, 'fastify-sse-h2: this instance could not join the others through the store')
      })
    }
    return await this.joining
  }

  /** An action any instance sent (this one included), applied to this instance's streams: its answer. */
  private apply (action: Action): object | Promise<object> {
    switch (action.type) {
      case 'close':
        return { streams: this.close(action.tag) }
      case 'subscribe':
        return this.subscribe(action.tag, action.channel, action.schema, action.filter)
      case 'unsubscribe':
        return { streams: this.unsubscribe(action.tag, action.channel) }
      case 'count':
        return { streams: this.tags.count(action.tag) }
      default:
        // An action of a later version: this one does nothing of it.
        return {}
    }
  }

  private close (tag: string): number {
    const streams = this.tags.streams(tag)
    for (const stream of streams) stream.retire(drawRetry(this.retry), new FST_SSE_STREAM_ENDED())
    return streams.length
  }

  /** Answers once every stream knows where it starts on the channel: what is published after reaches each. */
  private async subscribe (tag: string, name: string, schema: object | undefined, filterName: string | undefined): Promise<object> {
    const streams = this.tags.streams(tag)
    if (streams.length === 0) return { streams: 0 }
    let channel: Channel
    let filter: ChannelFilter | undefined
    try {
      channel = this.channels.channelFor(name, schema)
      filter = filterName === undefined ? undefined : this.filters.named(filterName)
    } catch (error) {
      this.log.error({ err: error, channel: name, tag }, 'fastify-sse-h2: a subscription by tag could not be applied on this instance')
      return { streams: 0 }
    }
    let applied = 0
    const starts: Array<Promise<void>> = []
    for (const stream of streams) {
      try {
        stream.join(channel, filter, true)
      } catch (error) {
        // A stream that cannot carry it (its route's event schema, 128 channels already) keeps what it had.
        this.log.warn({ err: error, channel: name, tag }, 'fastify-sse-h2: a tagged stream could not be subscribed to a channel')
        continue
      }
      applied++
      starts.push(stream.whenStarted())
    }
    await Promise.all(starts)
    return { streams: applied }
  }

  private unsubscribe (tag: string, name: string): number {
    const channel = this.channels.existing(name)
    if (channel === undefined) return 0
    let applied = 0
    for (const stream of this.tags.streams(tag)) {
      if (!stream.subscriptions.some((subscription) => subscription.channel === channel)) continue
      stream.unsubscribe(channel)
      applied++
    }
    return applied
  }
}

/** The filters tagged subscriptions may name: each registered under one name, on every instance. */
export class SteeringFilters {
  private readonly byName = new Map<string, ChannelFilter>()
  private readonly names = new WeakMap<ChannelFilter, string>()

  register (name: string, filter: ChannelFilter): void {
    this.byName.set(name, filter)
    this.names.set(filter, name)
  }

  /** The name a filter was registered under, or undefined. */
  nameOf (filter: ChannelFilter): string | undefined {
    return this.names.get(filter)
  }

  /** The filter registered under that name; throws when there is none (on this instance). */
  named (name: string): ChannelFilter {
    const filter = this.byName.get(name)
    if (filter === undefined) throw new Error(`no filter is registered as ${JSON.stringify(name)} (app.sse.filter())`)
    return filter
  }

  has (name: string): boolean {
    return this.byName.has(name)
  }
}

/** The name a channel's subscriber count is reported under. */
export function presenceKey (channel: string): string {
  return 'subscribers:' + channel
}

/** Rejects if `promise` has not settled within STEER_TIMEOUT_MS. */
async function bounded<T> (promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`this instance could not join the others within ${STEER_TIMEOUT_MS} ms`)),
      STEER_TIMEOUT_MS)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** The sum of one field of every answer. */
export function sumOf (result: ControlResult, field: 'streams'): number {
  let sum = 0
  for (const answer of result.answers.values()) {
    const value = (answer as Record<string, unknown> | undefined)?.[field]
    if (typeof value === 'number') sum += value
  }
  return sum
}
