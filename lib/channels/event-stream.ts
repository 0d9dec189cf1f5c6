import type { FastifyBaseLogger } from 'fastify'
import type { SseMessage, SseSerializer } from '../core/events'
import type { StoredEvent } from '../stores/store'
import type { StreamGroup } from '../stream/stream-group'
import type { Subscription } from './subscription'
import type { Channel, ChannelFilter } from './channel'
import { StreamTransport } from '../stream/transport'
import type { RawResponse } from '../stream/response'
import { MAX_CURSOR_CHANNELS } from '../protocol/cursor-encoding'
import { frameEvent } from '../protocol/framing'
import { StreamCursor, refuseOwnId } from './cursor'
import { checkChannel, subscriptionEntry, type SseSubscribeOptions } from './channel-list'
import { untag } from './tags'
import { FST_SSE_CHANNEL_CLOSED, FST_SSE_TOO_MANY_CHANNELS } from '../core/errors'

/**
 * One open event stream: the handle `reply.sse()` returns. Its transport (what is written, and when) is the
 * StreamTransport it extends; this half holds the channels it carries: its subscriptions, and on a stream of several
 * channels the cursor that is the id of each of its events.
 */
export class EventStream<Message extends SseMessage = SseMessage> extends StreamTransport<Message> {
  /** @internal The channels it is subscribed to. */
  readonly subscriptions: Subscription[] = []
  // Set once it carries several channels (or resumes by a cursor): the ids of its events are then this cursor.
  private streamCursor: StreamCursor | undefined
  // Throws for a channel the stream's route may not stream (its event schema would not apply).
  private readonly checkRoute: ((channel: Channel) => void) | undefined
  private readonly frameSerializer: SseSerializer
  // While where a subscription starts is on its way (its replay, its store's head()), what the stream would write
  // waits here, in the order it came, the starts in their place; and is written so once every start is known. Own
  // frames held count as waiting for the client (heldLength): bounded as everything else is.
  private held: Held[] | undefined
  private starts = 0
  private heldLength = 0
  private heldWaits: Array<() => void> = []

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined, serializer: SseSerializer,
    group: StreamGroup, checkRoute?: (channel: Channel) => void) {
    super(res, log, lastEventId, serializer, group)
    this.checkRoute = checkRoute
    this.frameSerializer = serializer
  }

  /** @internal Its cursor, once it carries several channels (or resumes by one). */
  get cursor (): StreamCursor | undefined {
    return this.streamCursor
  }

  /**
   * Sends one event, after every channel event already published to this stream, and after the replay of every
   * channel it resumes: while one is being read, the event waits (and `false` says to wait for `drained()`).
   * Returns `false` when the client is behind or the stream is closed. An invalid event throws and nothing is written.
   */
  override send (message: Message): boolean {
    if (this.streamCursor !== undefined && !this.closed) refuseOwnId(message)
    if (this.held === undefined || this.closed) return super.send(message)
    return this.hold(frameEvent(message, this.frameSerializer), true)
  }

  /** @internal */
  override sendPulled (message: unknown): boolean {
    if (this.streamCursor !== undefined) refuseOwnId(message)
    if (this.held === undefined || this.closed) return super.sendPulled(message)
    // The source waits for drained(): one event of it held at the most.
    return this.hold(frameEvent(message as SseMessage, this.frameSerializer), false)
  }

  override drained (): Promise<void> {
    if (this.held === undefined) return super.drained()
    return new Promise<void>((resolve) => this.heldWaits.push(resolve)).then(async () => await super.drained())
  }

  /**
   * Subscribes the open stream to one more channel: its events arrive from now on, or, when the client came back with
   * a cursor that holds the channel, from after its position there. The stream then carries several channels, and
   * the id of every event is its cursor. Subscribed already: the filter is replaced. Closed: nothing happens.
   */
  subscribe (channel: Channel<never>, options?: SseSubscribeOptions): void {
    const { channel: checked, filter } = subscriptionEntry(channel, options)
    this.join(checked, filter, true)
  }

  /**
   * Unsubscribes the stream from a channel, after the events of it this instance already holds; the stream stays
   * open. Not subscribed: nothing happens.
   */
  unsubscribe (channel: Channel<never>): void {
    const checked = checkChannel(channel, 'stream.unsubscribe()')
    const index = this.subscriptions.findIndex((subscription) => subscription.channel === checked)
    if (index === -1) return
    const subscription = this.subscriptions[index]
    checked.catchUp(subscription)
    this.subscriptions.splice(index, 1)
    subscription.cancel()
    checked.unsubscribe(subscription)
    // A close that waited for its replay goes ahead.
    this.settled()
  }

  /**
   * @internal Subscribes to a channel, resumed by the stream's last event id. `several`: the stream carries several
   * channels (a list, or subscribe()), and writes its cursor as the id of its events. `answer`: as Channel's
   * subscribe() (at once when there is nothing to subscribe).
   */
  join (channel: Channel, filter: ChannelFilter | undefined, several: boolean, answer?: (error?: unknown) => void): void {
    const subscribed = this.subscriptions.find((subscription) => subscription.channel === channel)
    if (this.closed || subscribed !== undefined) {
      if (subscribed !== undefined) subscribed.filter = filter
      answer?.()
      return
    }
    if (channel.closed) throw new FST_SSE_CHANNEL_CLOSED(channel.name)
    if (this.subscriptions.length === MAX_CURSOR_CHANNELS) {
      throw new FST_SSE_TOO_MANY_CHANNELS(MAX_CURSOR_CHANNELS, MAX_CURSOR_CHANNELS + 1)
    }
    this.checkRoute?.(channel)
    if (this.streamCursor === undefined) {
      const cursor = new StreamCursor(this.lastEventId)
      // A client that comes back with a cursor is given cursors again, on a stream of one channel too.
      if (several || cursor.resumes) {
        this.streamCursor = cursor
        for (const subscription of this.subscriptions) cursor.add(subscription, this.subscriptions)
      }
    }
    const cursor = this.streamCursor
    channel.subscribe(this, filter, cursor !== undefined
      ? cursor.resumeOf(channel.name)
      : this.lastEventId === undefined ? undefined : { id: this.lastEventId }, answer)
  }

  /**
   * @internal Resolves once where each of its subscriptions starts is known, and what it held meanwhile is written (at
   * once when none is on its way), or it ended.
   */
  async whenStarted (): Promise<void> {
    if (this.held === undefined) return
    await new Promise<void>((resolve) => this.heldWaits.push(resolve))
  }

  /** @internal Whether it holds what it writes: a subscription's start is on its way. */
  get holding (): boolean {
    return this.held !== undefined
  }

  /** @internal Where `subscription` starts is on its way: what the stream writes waits, from here, until it is known. */
  holdFor (subscription: Subscription): void {
    (this.held ??= []).push({ start: subscription })
    this.starts++
  }

  /** @internal A start it held for is known (or never will be): once all are, what it held is written, in order. */
  started (): void {
    if (--this.starts > 0 || this.held === undefined) return
    const held = this.held
    let i = 0
    // A write may end the stream (a client behind), or make it wait for another start (a filter that subscribes).
    while (i < held.length && this.starts === 0 && !this.hasEnded) {
      const item = held[i++]
      if ('start' in item) {
        item.start.writeStart()
      } else if ('frame' in item) {
        this.heldLength -= item.frame.length
        this.writeReplay(item.frame, 1)
      } else {
        item.subscription.write(item.events, item.shared)
      }
    }
    held.splice(0, i)
    if (held.length > 0 && !this.hasEnded) return
    this.held = undefined
    this.heldLength = 0
    this.releaseHeldWaits()
    // A close that waited for what was held goes ahead.
    this.settled()
  }

  /** @internal Holds `events` handed to `subscription` while a start is on its way; false if it holds nothing. */
  holds (subscription: Subscription, events: readonly StoredEvent[], shared: (() => Buffer) | undefined): boolean {
    if (this.held === undefined) return false
    // A copy: the channel's batch of this tick may grow after a catch-up.
    this.held.push({ subscription, events: events.slice(), shared })
    return true
  }

  /** @internal A subscription the channel made for it: its events are written from now on. */
  attach (subscription: Subscription): void {
    this.subscriptions.push(subscription)
    this.streamCursor?.add(subscription, this.subscriptions)
  }

  /** Channel events this tick holds for the stream go ahead of what it writes itself. */
  protected override catchUp (): void {
    const subscriptions = this.subscriptions
    for (let i = 0; i < subscriptions.length; i++) subscriptions[i].channel.catchUp(subscriptions[i])
  }

  protected override holdsEnd (): boolean {
    return this.held !== undefined || this.subscriptions.some(holdsBack)
  }

  protected override heldBytes (): number {
    return this.heldLength
  }

  protected override released (): void {
    untag(this)
    for (const subscription of this.subscriptions) subscription.channel.unsubscribe(subscription)
    this.subscriptions.length = 0
    this.held = undefined
    this.heldLength = 0
    this.releaseHeldWaits()
  }

  /** Holds an own frame behind what the stream holds already; false: wait for drained() (or nothing is written). */
  private hold (frame: string, bounded: boolean): boolean {
    // What this tick holds for the stream's channels goes first.
    this.catchUp()
    if (!this.admit(frame.length, bounded)) return false
    const held = this.held as Held[]
    held.push({ frame })
    this.heldLength += frame.length
    return false
  }

  private releaseHeldWaits (): void {
    const waits = this.heldWaits
    this.heldWaits = []
    for (const resolve of waits) resolve()
  }
}

/** What a stream holds while a start is on its way: a start, a channel's events, or an own frame. */
type Held = { start: Subscription } | { frame: string } |
{ subscription: Subscription, events: readonly StoredEvent[], shared: (() => Buffer) | undefined }

function holdsBack (subscription: Subscription): boolean {
  return subscription.channel.holdsBack(subscription.stream)
}
