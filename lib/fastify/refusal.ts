import type { FastifyError, FastifyReply } from 'fastify'
import { negotiate } from '../protocol/negotiation'
import { eventStreamHeaders, REFUSED_HEADER } from '../protocol/response-headers'
import { drawRetry, type ShutdownRetry } from '../stream/shutdown-retry'

// The replies a stream was refused on: the handler's return value must then be ignored (see index.ts).
const refusedReplies = new WeakSet<FastifyReply>()

/**
 * Refuses a stream through Fastify's reply, so that onSend hooks and CORS apply as to any reply.
 *
 * A request that asks for the event stream by name (`Accept: text/event-stream`: EventSource, the `eventsource`
 * package, our client) is answered `200` with a `retry:` drawn from `window` and a comment naming the code, then
 * ended: an EventSource reconnects after that delay, with its Last-Event-ID, where a `503` would stop it for good
 * (HTML standard, "fail the connection"). No `id:` line, so the client keeps its last id. `Retry-After` and the
 * `sse-refused` header say the same to a client that reads headers.
 *
 * Any other request (curl, monitoring, a fetch() that did not ask for the stream) gets `503` with `Retry-After`
 * (seconds): the error handler writes the body (by default `{ statusCode, code, error, message }`).
 */
export function refuseStream (reply: FastifyReply, reason: FastifyError, retryAfter: number, window: ShutdownRetry): void {
  refusedReplies.add(reply)
  if (negotiate(reply.request.headers.accept) !== 'event-stream') {
    reply.code(503).header('retry-after', String(retryAfter)).send(reason)
    return
  }
  const retry = drawRetry(window)
  const headers = eventStreamHeaders(reply.getHeaders(), 'stream' in reply.raw)
  headers['retry-after'] = String(Math.ceil(retry / 1000))
  headers[REFUSED_HEADER] = reason.code
  // Not an error: nothing for the error handler to log at error level; the plugin counted and reported it already.
  reply.code(200).headers(headers).send(`retry: ${retry}\n: refused ${reason.code}\n\n`)
}

/**
 * The window an EventSource refused past `limits` comes back in: from `retryAfter` seconds to twice that (0 to 1 s
 * for 0), so that a full instance is not asked again by every refused client at the same moment.
 */
export function limitsRetryWindow (retryAfter: number): ShutdownRetry {
  return { min: retryAfter * 1000, max: Math.max(retryAfter * 2000, 1000) }
}

/** Whether reply.sse() refused a stream on this reply. */
export function isRefused (reply: FastifyReply): boolean {
  return refusedReplies.has(reply)
}
