import type { FastifyBaseLogger, FastifyError, FastifyReply } from 'fastify'
import type { SseReplyOptions, SseSource } from './types'
import type { Settings } from './options'
import type { StreamGroups } from '../stream/stream-groups'
import type { StreamLimits } from '../stream/stream-limits'
import type { ClosingConnections } from '../stream/closing-connections'
import type { ChannelSchemas } from '../channels/channel-schemas'
import type { Channels } from '../channels/channels'
import { EventStream } from '../channels/event-stream'
import { resolveStreamSettings } from './route-options'
import { resolveExpiresAt, resolveTags } from './options'
import { chooseEncoding } from '../stream/compression'
import { eventStreamHeaders } from '../protocol/response-headers'
import { readLastEventId } from '../protocol/last-event-id'
import { openSource, pump, type PulledSource } from '../stream/sources'
import { Channel } from '../channels/channel'
import { channelEntries, isChannelList, type ChannelEntry } from '../channels/channel-list'
import { limitsRetryWindow, refuseStream } from './refusal'
import { drawRetryAfter } from '../stream/shutdown-retry'
import { publishStreamOpen } from '../observe/diagnostics'
import {
  FST_SSE_ALREADY_SENT, FST_SSE_CHANNEL_CLOSED, FST_SSE_INVALID_OPTION, FST_SSE_SCHEMA_MISMATCH,
  FST_SSE_SERVER_CLOSING, FST_SSE_CHANNEL_UNAVAILABLE
} from '../core/errors'
import { describe } from '../core/describe'

type ReplySse = (this: FastifyReply, source?: SseSource, options?: SseReplyOptions) => EventStream

/** Makes `reply.sse()` for one plugin instance. */
export function createReplySse (settings: Settings, streamGroups: StreamGroups, schemas: ChannelSchemas,
  connections: ClosingConnections, steered: Pick<Channels, 'tags' | 'steering'>): ReplySse {
  return function sse (this: FastifyReply, source?: SseSource, options?: SseReplyOptions): EventStream {
    const reply = this
    const { serializer, retry, compression, group, eventSchema } = resolveStreamSettings(reply, settings,
      streamGroups, options)
    const tags = resolveTags(options?.tags)
    const expiresAt = resolveExpiresAt(options?.expiresAt)
    const lastEventId = readLastEventId(reply.request, settings.lastEventIdQuery)
    // A channel's events are framed once, by its own schema: a route's event schema cannot shape them, so a route
    // with one streams only channels of the same schema.
    const checkRoute = eventSchema === undefined
      ? undefined
      : (channel: Channel): void => {
          const own = schemas.schemaOf(channel)
          if (own === undefined) throw new FST_SSE_SCHEMA_MISMATCH(channel.name, 'none')
          if (!sameSchema(own, eventSchema.schema)) throw new FST_SSE_SCHEMA_MISMATCH(channel.name, 'another one')
        }
    const stream = new EventStream(reply.raw, reply.log, lastEventId, serializer, group, checkRoute)

    const channels: ChannelEntry[] | undefined = source instanceof Channel
      ? [{ channel: source, filter: options?.filter }]
      : isChannelList(source) ? channelEntries(source) : undefined
    if (checkRoute !== undefined) for (const { channel } of channels ?? []) checkRoute(channel)
    if (!(source instanceof Channel) && options?.filter !== undefined) {
      throw new FST_SSE_INVALID_OPTION('filter', 'given with a channel source only (a list gives each channel its own: ' +
        '{ channel, filter })', 'a filter for another source')
    }
    const limits = streamGroups.limits
    const address = limits === undefined ? '' : reply.request.ip
    const refusal = whyNot(reply, streamGroups, address)
    const closed = channels?.find(({ channel }) => channel.closed)
    if (refusal === undefined && closed !== undefined) throw new FST_SSE_CHANNEL_CLOSED(closed.channel.name)
    // Admitted: it holds its slot from now on, before any store answers for its channels; and its tags, until it ends.
    if (refusal === undefined) {
      limits?.take(stream, address)
      if (tags !== undefined) steered.tags.tag(stream, tags)
    }

    // The source is resolved, and the headers checked by Node, before the reply is hijacked: a bad source
    // or header is an ordinary error response, not a request left hanging.
    // A refused stream runs nothing of its source: a function source is not called.
    let pulled
    try {
      pulled = source === undefined || channels !== undefined || (refusal !== undefined && typeof source === 'function')
        ? undefined
        : openSource(source, { signal: stream.signal, lastEventId })
      if (refusal !== undefined) {
        abandon(stream, pulled, refusal, reply.log)
        refuse(reply, refusal, streamGroups, connections, settings)
        return stream
      }
      const headers = eventStreamHeaders(reply.getHeaders(), 'stream' in reply.raw, group.heartbeatInterval)
      const encoding = compression === false ? undefined : chooseEncoding(reply.request.headers['accept-encoding'], compression)
      if (encoding !== undefined) headers['content-encoding'] = encoding
      // Compressed or not, a route that offers compression answers by Accept-Encoding: caches must know (RFC 9110 12.5.5).
      if (compression !== false) headers.vary = headers.vary === undefined ? 'accept-encoding' : `${String(headers.vary)}, accept-encoding`
      const open = (): void => {
        stream.open(reply.statusCode, headers, retry, reply.request.method === 'HEAD', encoding)
        reply.hijack()
        // Not for HEAD, nor for a client already gone: those never opened.
        if (stream.closed) return
        if (expiresAt !== undefined) group.lifetimes.expireAt(stream, expiresAt)
        publishStreamOpen(stream, reply)
      }
      // Answered once the store has said where the subscriber starts, on every channel: a client that saw its stream
      // open, and then had an event published, is owed it; and, for a stream with tags, once its instance is one the
      // others reach (its first): an action sent after it opened reaches it. At once with the memory store: a bad header
      // is then the handler's error. A list is a stream of several channels, even of one: its ids are cursors.
      const head = reply.request.method === 'HEAD'
      const joining = tags === undefined || head ? undefined : steered.steering.ready()
      const joins = channels === undefined || head ? [] : channels
      let answering = true
      let waiting = joins.length + (joining === undefined ? 0 : 1)
      const answered = (error?: FastifyError): void => {
        if (waiting === 0) return
        waiting = error === undefined ? waiting - 1 : 0
        if (waiting > 0) return
        if (answering && error === undefined) open()
        else answerLater(reply, stream, open, error, streamGroups, connections, settings)
      }
      if (waiting === 0) open()
      const several = !(source instanceof Channel)
      for (const { channel, filter } of joins) {
        stream.join(channel, filter, several, (error) => answered(error === undefined ? undefined : unavailable(channel, error)))
      }
      joining?.then(() => answered())
      answering = false
    } catch (error) {
      abandon(stream, pulled, error as Error, reply.log)
      throw error
    }
    // pump() never rejects: a failing source is logged and its stream closed.
    if (pulled !== undefined) pump(stream, pulled, reply.log)
    return stream
  }
}

/**
 * Opens a channel stream whose store answered after the handler ran, through the reply. A store that could not say
 * where the subscriber starts, or a server that began closing meanwhile, has it refused with a 503 and a Retry-After
 * drawn from shutdownRetry, so that refused clients come back spread out.
 */
function answerLater (reply: FastifyReply, stream: EventStream, open: () => void, error: FastifyError | undefined,
  streamGroups: StreamGroups, connections: ClosingConnections, settings: Settings): void {
  const refusal = error ?? (streamGroups.closing ? new FST_SSE_SERVER_CLOSING() : undefined)
  if (refusal !== undefined) {
    stream.abandon(refusal)
    refuse(reply, refusal, streamGroups, connections, settings)
    return
  }
  try {
    open()
  } catch (failure) {
    stream.abandon(failure as Error)
    reply.send(failure)
  }
}

/** The same schema: the same object, or one of the same JSON (Fastify may hand the route's over as a copy). */
function sameSchema (a: object, b: object): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b)
}

function unavailable (channel: Channel, error: unknown): FastifyError {
  return new FST_SSE_CHANNEL_UNAVAILABLE(channel.name, (error as Error)?.message ?? describe(error), { cause: error })
}

/** Why no stream may open on this reply now, or undefined if one may. */
function whyNot (reply: FastifyReply, streamGroups: StreamGroups, address: string): FastifyError | undefined {
  if (reply.sent || reply.raw.headersSent) {
    return new FST_SSE_ALREADY_SENT(reply.request.method, reply.routeOptions.url ?? reply.request.url)
  }
  if (streamGroups.closing) return new FST_SSE_SERVER_CLOSING()
  return streamGroups.refusal(address)
}

function refuse (reply: FastifyReply, reason: FastifyError, streamGroups: StreamGroups, connections: ClosingConnections,
  settings: Settings): void {
  streamGroups.stats.streamRefused(reply, reason)
  if (reason instanceof FST_SSE_ALREADY_SENT) {
    // As Fastify's own reply.send() does on a reply already sent: a warning, and nothing thrown (this may run in a
    // timer, where a throw would end the process). The handle returned is closed.
    reply.log.warn({ err: reason }, reason.message)
  } else if (reason instanceof FST_SSE_SERVER_CLOSING) {
    // Its connection goes too, like those of the streams app.close() ended: nothing else would close it.
    if (!('stream' in reply.raw)) reply.header('connection', 'close')
    refuseStream(reply, reason, drawRetryAfter(settings.shutdownRetry), settings.shutdownRetry)
    connections.add(reply.raw)
  } else if (reason instanceof FST_SSE_CHANNEL_UNAVAILABLE) {
    refuseStream(reply, reason, drawRetryAfter(settings.shutdownRetry), settings.shutdownRetry)
  } else {
    const limits = streamGroups.limits as StreamLimits
    limits.noteRefusal(reply.log)
    refuseStream(reply, reason, limits.retryAfter, limitsRetryWindow(limits.retryAfter))
  }
}

/** Closes a stream that will never open; pump() then only ends the source, so that it lets go of what it holds. */
function abandon (stream: EventStream, pulled: PulledSource | undefined, reason: Error, log: FastifyBaseLogger): void {
  stream.abandon(reason)
  if (pulled !== undefined) pump(stream, pulled, log)
}
