import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import type { SseReplyOptions, SseSource } from './types'
import type { Settings } from './options'
import type { OpenStreams } from './open-streams'
import type { StreamLimits } from './stream-limits'
import { EventStream } from './event-stream'
import { checkStreamOptions, resolveCompression } from './options'
import { chooseEncoding } from './compression'
import { eventStreamHeaders } from './response-headers'
import { readLastEventId } from './last-event-id'
import { openSource, pump, type PulledSource } from './sources'
import { Channel } from './channel'
import { FST_SSE_ALREADY_SENT, FST_SSE_CHANNEL_CLOSED, FST_SSE_INVALID_OPTION } from './errors'

export type ReplySse = (this: FastifyReply, source?: SseSource, options?: SseReplyOptions) => EventStream

/** Makes `reply.sse()` for one plugin instance. */
export function createReplySse (settings: Settings, openStreams: OpenStreams): ReplySse {
  return function sse (this: FastifyReply, source?: SseSource, options?: SseReplyOptions): EventStream {
    const reply = this
    if (reply.sent || reply.raw.headersSent) throw new FST_SSE_ALREADY_SENT()
    if (options !== undefined) checkStreamOptions(options)
    const serializer = options?.serializer ?? settings.serializer
    const retry = options?.retry ?? settings.retry
    const lastEventId = readLastEventId(reply.request, settings.lastEventIdQuery)
    const stream = new EventStream(reply.raw, reply.log, lastEventId, serializer, openStreams)

    const channel = source instanceof Channel ? source : undefined
    if (channel?.closed === true) throw new FST_SSE_CHANNEL_CLOSED(channel.name)
    if (channel === undefined && options?.filter !== undefined) {
      throw new FST_SSE_INVALID_OPTION('filter', 'given with a channel source only', 'a filter for another source')
    }

    // The source is resolved, and the headers checked by Node, before the reply is hijacked: a bad source
    // or header is an ordinary error response, not a request left hanging.
    // Past the limits, nothing of the source runs: a function source is not called.
    if (openStreams.limits !== undefined) stream.address = reply.request.ip
    const refusal = openStreams.refusal(stream.address)
    let pulled
    try {
      pulled = source === undefined || channel !== undefined || (refusal !== undefined && typeof source === 'function')
        ? undefined
        : openSource(source, { signal: stream.signal, lastEventId })
      if (refusal !== undefined) {
        abandon(stream, pulled, refusal, reply.log)
        ;(openStreams.limits as StreamLimits).refuse(reply, refusal, reply.log)
        return stream
      }
      const headers = eventStreamHeaders(reply.getHeaders(), 'stream' in reply.raw)
      const offered = options?.compression === undefined ? settings.compression : resolveCompression(options.compression)
      const encoding = offered === false ? undefined : chooseEncoding(reply.request.headers['accept-encoding'], offered)
      if (encoding !== undefined) headers['content-encoding'] = encoding
      // Compressed or not, a route that offers compression answers by Accept-Encoding: caches must know (RFC 9110 12.5.5).
      if (offered !== false) headers.vary = headers.vary === undefined ? 'accept-encoding' : `${String(headers.vary)}, accept-encoding`
      stream.open(reply.statusCode, headers, retry, reply.request.method === 'HEAD', encoding)
    } catch (error) {
      abandon(stream, pulled, error as Error, reply.log)
      throw error
    }
    reply.hijack()
    channel?.subscribe(stream, lastEventId, options?.filter)
    // pump() never rejects: a failing source is logged and its stream closed.
    if (pulled !== undefined) pump(stream, pulled, reply.log)
    return stream
  }
}

/** Closes a stream that will never open; pump() then only ends the source, so that it lets go of what it holds. */
function abandon (stream: EventStream, pulled: PulledSource | undefined, reason: Error, log: FastifyBaseLogger): void {
  stream.abandon(reason)
  if (pulled !== undefined) pump(stream, pulled, log)
}
