import type { Channel, ChannelFilter } from './channel'
import type { Steering, SseSteerResult } from './steering'
import type { ChannelSchemas } from './channel-schemas'
import { sumOf } from './steering'
import { checkChannel } from './channel-list'
import { check } from '../core/checks'
import { SUBSCRIBE_OPTIONS, refuseUnknownOptions } from '../core/option-names'

/** Options of `app.sse.tagged(tag).subscribe(channel, options)`. */
export interface SseTaggedSubscribeOptions {
  /**
   * Which of the channel's events the streams receive: a filter registered with `app.sse.filter(name, filter)` on every
   * instance (a function cannot travel between them: its name does).
   */
  filter?: ChannelFilter
}

/**
 * `app.sse.tagged(tag)`: every open stream with that tag, on every instance that shares the store. Each method sends
 * its action to every instance, and resolves once each has applied it to its streams (or after 2 s, naming those that
 * did not answer).
 */
export class SseTagged {
  readonly tag: string
  private readonly steering: Steering
  private readonly schemas: ChannelSchemas

  /** @internal */
  constructor (tag: string, steering: Steering, schemas: ChannelSchemas) {
    check('tag', typeof tag === 'string' && tag !== '', 'a non-empty string', tag)
    this.tag = tag
    this.steering = steering
    this.schemas = schemas
  }

  /**
   * Ends each stream with a `retry:` first (drawn from `shutdownRetry`: the clients of many streams come back spread
   * over it), so that its client comes back, through the route, with fresh credentials.
   */
  async close (): Promise<SseSteerResult> {
    return steered(await this.steering.send({ type: 'close', tag: this.tag }))
  }

  /**
   * Subscribes each stream to the channel from now on (each already subscribed gets the filter given): an event
   * published after this resolved reaches every one of them. A stream of one channel then carries several, and its
   * ids become cursors. Its route must give the channel to a reconnect too (keep the membership where the route reads
   * it): the reconnect then resumes it exactly.
   */
  async subscribe (channel: Channel<never>, options?: SseTaggedSubscribeOptions): Promise<SseSteerResult> {
    const checked = checkChannel(channel, 'tagged().subscribe()')
    check('options of tagged().subscribe()', options === undefined || (typeof options === 'object' && options !== null),
      'an object ({ filter })', options)
    if (options !== undefined) refuseUnknownOptions(options, SUBSCRIBE_OPTIONS)
    const filter = options?.filter
    const filterName = filter === undefined ? undefined : this.steering.filters.nameOf(filter)
    check('filter', filter === undefined || filterName !== undefined,
      'a filter registered with app.sse.filter(name, filter) on every instance (a function cannot travel between them)',
      filter)
    const schema = this.schemas.schemaOf(checked)
    return steered(await this.steering.send({
      type: 'subscribe',
      tag: this.tag,
      channel: checked.name,
      ...(schema === undefined ? {} : { schema }),
      ...(filterName === undefined ? {} : { filter: filterName })
    }))
  }

  /** Unsubscribes each stream from the channel, after the events of it each instance already holds; they stay open. */
  async unsubscribe (channel: Channel<never>): Promise<SseSteerResult> {
    const checked = checkChannel(channel, 'tagged().unsubscribe()')
    return steered(await this.steering.send({ type: 'unsubscribe', tag: this.tag, channel: checked.name }))
  }

  /** The streams open with the tag, on every instance that answered within 2 s. */
  async count (): Promise<number> {
    return sumOf(await this.steering.ask({ type: 'count', tag: this.tag }, `count ${this.tag}`), 'streams')
  }
}

function steered (result: Awaited<ReturnType<Steering['send']>>): SseSteerResult {
  return { streams: sumOf(result, 'streams'), unanswered: result.unanswered }
}
