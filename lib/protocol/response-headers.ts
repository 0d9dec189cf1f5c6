import type { OutgoingHttpHeader, OutgoingHttpHeaders } from 'node:http'

/** Names the code of a stream refused as an event stream (lib/fastify/refusal.ts): `FST_SSE_TOO_MANY_STREAMS`, ... */
export const REFUSED_HEADER = 'sse-refused'
/** The stream's heartbeat interval (ms): a client that hears nothing for about twice that knows the connection is dead. */
export const HEARTBEAT_HEADER = 'sse-heartbeat'

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  // Intermediaries must not serve a stale copy of a live stream, nor transform it (compressing proxies and CDNs buffer
  // what they compress).
  'cache-control': 'no-cache, no-transform',
  // nginx buffers proxied responses by default, which would hold events back.
  'x-accel-buffering': 'no'
} as const

// HTTP/2 forbids connection-specific headers (RFC 9113 8.2.2): Node drops `connection` with an
// UnsupportedWarning and refuses the others with ERR_HTTP2_INVALID_CONNECTION_HEADERS (te and
// http2-settings too), which would leave the hijacked request hanging.
const CONNECTION_SPECIFIC = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings'
])

/**
 * The headers of an event stream: the handler's own (set with `reply.header()`), then the SSE ones, and the heartbeat
 * interval when heartbeats are on. The content type is always ours; a content length never applies to a stream.
 */
export function eventStreamHeaders (replyHeaders: Record<string, OutgoingHttpHeader | undefined>, http2: boolean,
  heartbeatInterval = 0): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { 'cache-control': SSE_HEADERS['cache-control'], 'x-accel-buffering': SSE_HEADERS['x-accel-buffering'] }
  for (const name in replyHeaders) {
    const value = replyHeaders[name]
    if (value === undefined || name === 'content-length' || name === 'content-type') continue
    if (http2 && CONNECTION_SPECIFIC.has(name)) continue
    headers[name] = value
  }
  headers['content-type'] = SSE_HEADERS['content-type']
  if (heartbeatInterval > 0) headers[HEARTBEAT_HEADER] = String(heartbeatInterval)
  return headers
}
