import type { Server as NetServer, Socket } from 'node:net'
import type { Http2Session } from 'node:http2'
import { Server as TlsServer } from 'node:tls'

/**
 * The connections of a server: every socket, and the HTTP/2 session of each that has one. A session closed
 * gracefully waits for its peer, and session.destroy() after that waits for its pending writes: a client that stopped
 * reading (a frozen process) never lets either finish, and only destroying the socket ends it. Node keeps that socket
 * to itself (`session.socket` is a proxy that refuses destroy()), so it is taken from the server's own events.
 */
export class ServerConnections {
  private readonly sockets = new WeakMap<Http2Session, Socket>()
  private readonly sessions = new Set<Http2Session>()
  private readonly open = new Set<Socket>()
  private arriving: Socket | undefined

  /** Watches the connections of `server`: HTTP/1.1 or HTTP/2, with TLS or not. */
  watch (server: NetServer): void {
    // The socket a client sends its requests on: the TLS socket over a TLS server. Node's own listener makes the
    // HTTP/2 session of a connection and emits 'session' at once, between these two.
    const event = server instanceof TlsServer ? 'secureConnection' : 'connection'
    server.prependListener(event, (socket: Socket) => {
      this.arriving = socket
      this.open.add(socket)
      socket.once('close', () => this.open.delete(socket))
    })
    server.on('session', (session: Http2Session) => {
      if (this.arriving !== undefined) this.sockets.set(session, this.arriving)
      this.sessions.add(session)
      session.once('close', () => this.sessions.delete(session))
    })
    server.on(event, () => { this.arriving = undefined })
  }

  socketOf (session: Http2Session): Socket | undefined {
    return this.sockets.get(session)
  }

  /**
   * Sends every session a GOAWAY: no new stream on it, and it closes once its streams are done. Node 20 keeps
   * an idle session open past server.close() until its timeout (72 s by default), which app.close() would wait
   * for: a client whose stream was refused, or ended, still holds one.
   */
  goAway (): void {
    for (const session of this.sessions) session.close()
  }

  /**
   * The connections that never carried a byte of a request: a client's spare, opened ahead of need (undici, on which
   * the `eventsource` package and Node's fetch run, keeps one beside a stream). Node waits for such a connection past
   * server.close() until headersTimeout: it is not idle to it, as it has not yet had a request.
   */
  unused (): Socket[] {
    const unused: Socket[] = []
    for (const socket of this.open) if (socket.bytesRead === 0) unused.push(socket)
    return unused
  }
}
