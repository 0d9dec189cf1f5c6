import type { FastifyError, FastifyReply } from 'fastify'

// The replies a stream was refused on: the handler's return value must then be ignored (see index.ts).
const refusedReplies = new WeakSet<FastifyReply>()

/**
 * Answers 503 with `Retry-After` (seconds) through Fastify's reply: the error handler writes the body (by
 * default `{ statusCode, code, error, message }`), and onSend hooks and CORS apply as to any reply.
 */
export function refuseStream (reply: FastifyReply, reason: FastifyError, retryAfter: number): void {
  refusedReplies.add(reply)
  reply.code(503).header('retry-after', String(retryAfter)).send(reason)
}

/** Whether reply.sse() refused a stream on this reply. */
export function isRefused (reply: FastifyReply): boolean {
  return refusedReplies.has(reply)
}
