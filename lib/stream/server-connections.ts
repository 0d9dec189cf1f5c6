import type { Server as NetServer, Socket } from 'node:net'
import type { Http2Session } from 'node:http2'
import { Server as TlsServer } from 'node:tls'

/**
 * The HTTP/2 sessions of a server, each with the socket under it. A session closed gracefully waits for its
 * peer, and session.destroy() after that waits for its pending writes: a client that stopped reading (a frozen
 * process) never lets either finish, and only destroying the socket ends it. Node keeps that socket to itself
 * (`session.socket` is a proxy that refuses destroy()), so it is taken from the server's own events.
 */
export class ServerSessions {
  private readonly sockets = new WeakMap<Http2Session, Socket>()
  private readonly open = new Set<Http2Session>()
  private arriving: Socket | undefined

  /** Watches the connections of `server` (h2c or h2 with TLS). */
  watch (server: NetServer): void {
    // Node's own listener makes the session of a connection and emits 'session' at once, between these two.
    const event = server instanceof TlsServer ? 'secureConnection' : 'connection'
    server.prependListener(event, (socket: Socket) => { this.arriving = socket })
    server.on('session', (session: Http2Session) => {
      if (this.arriving !== undefined) this.sockets.set(session, this.arriving)
      this.open.add(session)
      session.once('close', () => this.open.delete(session))
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
    for (const session of this.open) session.close()
  }
}
