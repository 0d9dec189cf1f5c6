import { channel } from 'node:diagnostics_channel'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { SseMessage } from '../core/events'
import type { SseCloseCode, SseRefusalCode, SseReplayOutcome } from '../core/codes'

// node:diagnostics_channel events, named and shaped as undici's are: one channel for each thing that happens, its
// message an object that names what it happened to. A subscriber keys its own state by `stream` (a WeakMap), as
// undici's subscribers key theirs by request. Each message is made only when the channel has subscribers.
// `Stream` is the stream's handle: the package exports these types with it (the EventStream class, a layer above).

/** `fastify-sse-h2:stream:open`: a stream opened (its headers are sent), in the request's async context. */
export interface StreamOpenMessage<Stream = object> {
  stream: Stream
  request: FastifyRequest
  reply: FastifyReply
}

/** `fastify-sse-h2:stream:close`: a stream that opened has ended; `code` says why. */
export interface StreamCloseMessage<Stream = object> {
  stream: Stream
  code: SseCloseCode
  reason: FastifyError
}

/**
 * `fastify-sse-h2:stream:drop`: the server is dropping a client that fell behind (`FST_SSE_SLOW_CLIENT`) or took nothing
 * for `writeTimeout` (`FST_SSE_FROZEN_CLIENT`), just before it closes: `stream.bufferedBytes` is still what waited.
 */
export interface StreamDropMessage<Stream = object> {
  stream: Stream
  code: 'FST_SSE_SLOW_CLIENT' | 'FST_SSE_FROZEN_CLIENT'
  reason: FastifyError
}

/** `fastify-sse-h2:stream:refuse`: a stream was refused before it opened (a `503`, or a reply already sent). */
export interface StreamRefuseMessage {
  request: FastifyRequest
  reply: FastifyReply
  code: SseRefusalCode
  reason: FastifyError
}

/** `fastify-sse-h2:channel:publish`: the store took an event published in this process. */
export interface ChannelPublishMessage {
  /** The channel's name. */
  channel: string
  id: string
  /** The event as it was given to `publish()`. */
  event: SseMessage
}

/** `fastify-sse-h2:channel:replay`: a subscriber's replay after its `Last-Event-ID` was written, or failed. */
export interface ChannelReplayMessage<Stream = object> {
  stream: Stream
  /** The channel's name. */
  channel: string
  /** `resumed`: from right after its id; `missed`: its id was not retained (the `missed` event went first). */
  outcome: SseReplayOutcome
  /** Events written by the replay (`missed` included), after the subscriber's filter. */
  events: number
  /** What the store failed with, when `outcome` is `failed`. */
  error?: unknown
}

const streamOpen = channel('fastify-sse-h2:stream:open')
const streamClose = channel('fastify-sse-h2:stream:close')
const streamDrop = channel('fastify-sse-h2:stream:drop')
const streamRefuse = channel('fastify-sse-h2:stream:refuse')
const channelPublish = channel('fastify-sse-h2:channel:publish')
const channelReplay = channel('fastify-sse-h2:channel:replay')

export function publishStreamOpen (stream: object, reply: FastifyReply): void {
  if (streamOpen.hasSubscribers) streamOpen.publish({ stream, request: reply.request, reply } satisfies StreamOpenMessage)
}

export function publishStreamClose (stream: object, reason: FastifyError): void {
  if (streamClose.hasSubscribers) {
    streamClose.publish({ stream, code: reason.code as SseCloseCode, reason } satisfies StreamCloseMessage)
  }
}

export function publishStreamDrop (stream: object, reason: FastifyError): void {
  if (streamDrop.hasSubscribers) {
    streamDrop.publish({ stream, code: reason.code as StreamDropMessage['code'], reason } satisfies StreamDropMessage)
  }
}

export function publishStreamRefuse (reply: FastifyReply, reason: FastifyError): void {
  if (streamRefuse.hasSubscribers) {
    streamRefuse.publish({
      request: reply.request, reply, code: reason.code as SseRefusalCode, reason
    } satisfies StreamRefuseMessage)
  }
}

export function publishChannelPublish (name: string, id: string, event: SseMessage): void {
  if (channelPublish.hasSubscribers) channelPublish.publish({ channel: name, id, event } satisfies ChannelPublishMessage)
}

export function publishChannelReplay (stream: object, name: string, outcome: SseReplayOutcome, events: number,
  error?: unknown): void {
  if (!channelReplay.hasSubscribers) return
  const message: ChannelReplayMessage = { stream, channel: name, outcome, events }
  if (outcome === 'failed') message.error = error
  channelReplay.publish(message)
}
