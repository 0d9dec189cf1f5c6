import type { Http2ServerResponse, Http2Session, ServerHttp2Stream } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'

// What a stream needs of its response, over HTTP/2 or HTTP/1.1: its headers written, and to know when its
// connection is gone.

export type RawResponse = ServerResponse | Http2ServerResponse

/** Whether the response's client is gone already. */
export function isGone (res: RawResponse): boolean {
  if ('stream' in res) return res.stream.destroyed || res.stream.closed
  // The request's socket: a pipelined response has none of its own until the responses before it are sent.
  return res.req.socket.destroyed
}

/**
 * Writes the headers now, so that the client's `open` event fires before the first event, however long that takes.
 * Returns the HTTP/2 session the stream is on.
 */
export function writeHeaders (res: RawResponse, statusCode: number, headers: OutgoingHttpHeaders): Http2Session | undefined {
  if ('stream' in res) {
    // Straight to the stream: the compatibility layer would keep a second copy of them for the stream's life.
    res.statusCode = statusCode
    res.stream.respond({ ...headers, ':status': statusCode })
    return res.stream.session
  }
  res.writeHead(statusCode, headers)
  res.flushHeaders()
  return undefined
}

/**
 * Calls `onClose` once the response is finished or its connection gone. Listeners cost memory on every idle stream:
 * 'close' is the one every stream needs (on, not once: once allocates a bound wrapper), and only HTTP/1.1 can emit
 * 'error'.
 */
export function watchClose (res: RawResponse, onClose: () => void): void {
  res.on('close', onClose)
  if ('stream' in res) return
  res.on('error', onResponseError)
  if (res.socket === null) watchQueued(res, onClose)
}

/** What frames are written to: the HTTP/2 stream itself (writes skip the compatibility layer), or the response. */
export function targetOf (res: RawResponse): ServerHttp2Stream | ServerResponse {
  return 'stream' in res ? res.stream : res
}

// A pipelined response queued behind others has no socket yet, and Node never closes it if the socket closes
// before its turn (it closes it with the socket only once it has it): the socket tells until then.
function watchQueued (res: ServerResponse, onClose: () => void): void {
  const socket = res.req.socket
  socket.once('close', onClose)
  res.once('socket', () => socket.removeListener('close', onClose))
}

// Node emits 'error' on an HTTP/1.1 response only for a write after its end, which the stream never does;
// without a listener such an error would crash the process, so one is there. (HTTP/2's compatibility layer
// never forwards errors to the response.)
/* c8 ignore next */
function onResponseError (): void {}
