import type { FastifyBaseLogger } from 'fastify'
import type { ControlMember, ControlMessage, ControlResult, SseStore, SseStoreControl } from '../stores/store'
import type { ShutdownRetry } from '../stream/shutdown-retry'
import type { Channel, ChannelFilter } from './channel'
import type { TagRegistry } from './tags'
import { MemoryControl } from '../stores/memory-control'
import { drawRetry } from '../stream/shutdown-retry'
import { FST_SSE_CONTROL_UNAVAILABLE, FST_SSE_STREAM_ENDED } from '../core/errors'

/**
 * How long an action waits for each instance's answer. An instance that has not answered by then is named in the
 * result: one gone without a word (SIGKILL) is waited for until its place lapses (the store's `leaseMs`: 3 s on Redis).
 */
export const STEER_TIMEOUT_MS = 2000
// How long the plugin waits, as the app starts, to be reached by the other instances; it goes on joining after that.
const JOIN_WAIT_MS = 5000

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
  /** Streams subscribed to the channel, on every instance that answered. */
  subscribers: number
  /** The instances that did not answer within 2 s, as in `SseSteerResult`: their streams are not counted. */
  unanswered: string[]
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
  | { type: 'presence', channel: string }

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
  // Counts asked for while the same is on its way share its answer.
  private readonly asking = new Map<string, Promise<ControlResult>>()
  private stopped = false

  constructor (store: SseStore, tags: TagRegistry, channels: SteeredChannels, retry: ShutdownRetry, log: FastifyBaseLogger) {
    this.control = store.control ?? new MemoryControl()
    this.tags = tags
    this.channels = channels
    this.retry = retry
    this.log = log
  }

  /**
   * Joins the instances, as the app starts: before any stream opens, so that every action sent after it reaches this
   * instance's streams. Waits a few seconds at the most (a store away as the app starts), and goes on joining after.
   */
  async start (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(resolve, JOIN_WAIT_MS, 'late') })
    const joined = await Promise.race([this.member().then(() => 'joined', () => 'failed'), late])
    clearTimeout(timer)
    if (joined === 'late') {
      this.log.warn('fastify-sse-h2: the other instances could not reach this one within 5 s; steering reaches it once they can')
    }
  }

  /** Leaves the instances: they no longer wait for this one. */
  async stop (): Promise<void> {
    this.stopped = true
    const joining = this.joining
    if (joining === undefined) return
    await joining.then(async (member) => await member.leave(), () => {})
  }

  /** Sends an action to every instance; resolves once each has answered, or after STEER_TIMEOUT_MS. */
  async send (action: Action): Promise<ControlResult> {
    let member: ControlMember
    try {
      member = await this.member()
      return await member.send(action as unknown as ControlMessage, STEER_TIMEOUT_MS)
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
      case 'presence':
        return { subscribers: this.channels.existing(action.channel)?.subscribers ?? 0 }
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

/** The sum of one field of every answer. */
export function sumOf (result: ControlResult, field: 'streams' | 'subscribers'): number {
  let sum = 0
  for (const answer of result.answers.values()) {
    const value = (answer as Record<string, unknown> | undefined)?.[field]
    if (typeof value === 'number') sum += value
  }
  return sum
}
