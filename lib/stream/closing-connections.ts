import type { ServerResponse } from 'node:http'
import type { Http2ServerResponse, Http2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { RawResponse } from './response'
import type { ServerConnections } from './server-connections'

// At shutdown, a client gets this long to take its last bytes and let its connection go before it is destroyed.
const SHUTDOWN_GRACE_MS = 1000

/**
 * The connections let go at shutdown: the ones that carried event streams, the ones a stream was refused on while
 * the server closes, and the ones that never carried a request (a client's spare). Each HTTP/2 session is sent a
 * GOAWAY, each HTTP/1.1 socket is ended once its response is sent; a connection whose client has not let go SHUTDOWN_GRACE_MS later is destroyed, socket
 * and all, so that a frozen client can never keep the server from closing.
 */
export class ClosingConnections {
  private readonly sessions: ServerConnections
  // Each connection still open, with the timer that destroys it.
  private readonly open = new Map<Http2Session | Socket, NodeJS.Timeout>()
  private whenClosed: (() => void) | undefined

  constructor (sessions: ServerConnections) {
    this.sessions = sessions
  }

  /** Lets go of the connection that carries `res`, once `res` is sent. */
  add (res: RawResponse): void {
    if ('stream' in res) this.addSession(res)
    else this.addSocket(res)
  }

  /** Lets go of a connection on which no request ever came (so none of the others here): it is ended now. */
  addUnused (socket: Socket): void {
    this.track(socket, () => socket.destroy())
    socket.once('close', () => this.untrack(socket))
    socket.end()
  }

  /** Resolves once every connection added is closed, by its client or by the grace. */
  async closed (): Promise<void> {
    if (this.open.size === 0) return
    await new Promise<void>((resolve) => { this.whenClosed = resolve })
  }

  private addSession (res: Http2ServerResponse): void {
    const session = res.stream.session
    if (session !== undefined) this.addHttp2Session(session)
  }

  /** Lets go of an HTTP/2 session: that of a stream dropped earlier, which no longer says which it was on. */
  addHttp2Session (session: Http2Session): void {
    if (session.destroyed || this.open.has(session)) return
    const socket = this.sessions.socketOf(session)
    this.track(session, () => {
      // Fastify listening on 'localhost' with both IPv4 and IPv6 adds a server for the second address, which it
      // shows no plugin (nor waits for on close): its sessions can only be destroyed. Not on the test machines.
      /* c8 ignore next */
      if (socket === undefined) session.destroy()
      else socket.destroy()
    })
    session.once('close', () => this.untrack(session))
    // No new stream on it; it closes once its streams are done and the client has closed its side.
    session.close()
  }

  private addSocket (res: ServerResponse): void {
    // The request's socket: a pipelined response has none of its own until the ones before it are sent.
    const socket = res.req.socket
    // An injected request (app.inject(), injectSSE()) has a stand-in for a socket, with no connection to let go.
    if (typeof socket.destroy !== 'function' || socket.destroyed || this.open.has(socket)) return
    this.track(socket, () => socket.destroy())
    socket.once('close', () => this.untrack(socket))
    if (res.writableFinished) socket.end()
    else res.once('finish', () => socket.end())
  }

  private track (connection: Http2Session | Socket, destroy: () => void): void {
    this.open.set(connection, setTimeout(destroy, SHUTDOWN_GRACE_MS))
  }

  private untrack (connection: Http2Session | Socket): void {
    clearTimeout(this.open.get(connection))
    this.open.delete(connection)
    if (this.open.size > 0) return
    this.whenClosed?.()
    this.whenClosed = undefined
  }
}
