import type { FastifyBaseLogger } from 'fastify'
import type { SseMessage, SseSerializer } from '../core/events'
import type { StreamGroup } from '../stream/stream-group'
import type { Subscription } from './subscription'
import type { Channel, ChannelFilter } from './channel'
import { StreamTransport } from '../stream/transport'
import type { RawResponse } from '../stream/response'
import { MAX_CURSOR_CHANNELS } from '../protocol/cursor-encoding'
import { StreamCursor, refuseOwnId } from './cursor'
import { checkChannel, subscriptionEntry, type SseSubscribeOptions } from './channel-list'
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

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined, serializer: SseSerializer,
    group: StreamGroup, checkRoute?: (channel: Channel) => void) {
    super(res, log, lastEventId, serializer, group)
    this.checkRoute = checkRoute
  }

  /** @internal Its cursor, once it carries several channels (or resumes by one). */
  get cursor (): StreamCursor | undefined {
    return this.streamCursor
  }

  override send (message: Message): boolean {
    if (this.streamCursor !== undefined && !this.closed) refuseOwnId(message)
    return super.send(message)
  }

  /** @internal */
  override sendPulled (message: unknown): boolean {
    if (this.streamCursor !== undefined) refuseOwnId(message)
    return super.sendPulled(message)
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
    return this.subscriptions.some(holdsBack)
  }

  protected override released (): void {
    for (const subscription of this.subscriptions) subscription.channel.unsubscribe(subscription)
    this.subscriptions.length = 0
  }
}

function holdsBack (subscription: Subscription): boolean {
  return subscription.replaying || subscription.channel.holdsBack(subscription.stream)
}
