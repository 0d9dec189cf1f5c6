import type { ChannelFilter } from './channel'
import { Channel } from './channel'
import { MAX_CURSOR_CHANNELS } from '../protocol/cursor-encoding'
import { FST_SSE_NOT_A_CHANNEL, FST_SSE_TOO_MANY_CHANNELS } from '../core/errors'
import { describe } from '../core/describe'
import { check } from '../core/checks'
import { SUBSCRIBE_OPTIONS, refuseUnknownOptions } from '../core/option-names'

/** Options of `stream.subscribe(channel, options)`. */
export interface SseSubscribeOptions {
  /** Which of the channel's events this stream receives, as `reply.sse(channel, { filter })`'s. */
  filter?: ChannelFilter
}

/** A channel of a stream, checked, and which of its events the stream receives. */
export interface ChannelEntry {
  channel: Channel
  filter: ChannelFilter | undefined
}

/**
 * Whether `reply.sse()` was given a list of channels: an array whose first item is a channel or `{ channel }`. (Any
 * other array is an iterable of events.)
 */
export function isChannelList (source: unknown): source is readonly unknown[] {
  if (!Array.isArray(source) || source.length === 0) return false
  const first: unknown = source[0]
  return first instanceof Channel || (typeof first === 'object' && first !== null && 'channel' in first)
}

/** The channels of `reply.sse([...])`, each a channel or `{ channel, filter }`, at most MAX_CURSOR_CHANNELS. */
export function channelEntries (list: readonly unknown[]): ChannelEntry[] {
  if (list.length > MAX_CURSOR_CHANNELS) throw new FST_SSE_TOO_MANY_CHANNELS(MAX_CURSOR_CHANNELS, list.length)
  return list.map((item) => {
    if (item instanceof Channel) return { channel: item, filter: undefined }
    const { channel, filter, ...rest } = item as { channel?: unknown, filter?: unknown }
    if (Object.keys(rest).length > 0) throw new FST_SSE_NOT_A_CHANNEL('reply.sse()', describe(item))
    return { channel: checkChannel(channel, 'reply.sse()'), filter: checkFilter(filter) }
  })
}

/** `stream.subscribe(channel, options)`'s arguments, checked. */
export function subscriptionEntry (channel: unknown, options: SseSubscribeOptions | undefined): ChannelEntry {
  check('options of stream.subscribe()', options === undefined || (typeof options === 'object' && options !== null),
    'an object ({ filter })', options)
  if (options !== undefined) refuseUnknownOptions(options, SUBSCRIBE_OPTIONS)
  return { channel: checkChannel(channel, 'stream.subscribe()'), filter: checkFilter(options?.filter) }
}

export function checkChannel (channel: unknown, what: string): Channel {
  if (channel instanceof Channel) return channel
  throw new FST_SSE_NOT_A_CHANNEL(what, describe(channel))
}

function checkFilter (filter: unknown): ChannelFilter | undefined {
  check('filter', filter === undefined || typeof filter === 'function', 'a function', filter)
  return filter as ChannelFilter | undefined
}
