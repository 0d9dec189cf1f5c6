import type { Http2Session } from 'node:http2'

/**
 * Open streams kept by the HTTP/2 session they are on; HTTP/1.1 streams (each a connection of its own) together,
 * under `undefined`. A walk over them (the heartbeat's) looks at one session's streams one after another, so that
 * what it writes to them goes out in one write of that session, not in one for every turn of the event loop the walk
 * spans.
 */
export class StreamsBySession<Stream> implements Iterable<Stream> {
  private readonly sessions = new Map<Http2Session | undefined, Set<Stream>>()
  private count = 0

  get size (): number {
    return this.count
  }

  add (stream: Stream, session: Http2Session | undefined): void {
    let streams = this.sessions.get(session)
    if (streams === undefined) {
      streams = new Set()
      this.sessions.set(session, streams)
    }
    const before = streams.size
    streams.add(stream)
    this.count += streams.size - before
  }

  /** False if it was not there. */
  delete (stream: Stream, session: Http2Session | undefined): boolean {
    const streams = this.sessions.get(session)
    if (streams === undefined || !streams.delete(stream)) return false
    this.count--
    if (streams.size === 0) this.sessions.delete(session)
    return true
  }

  /** Each session's streams, and the HTTP/1.1 streams together: a walk that stops keeps its place. */
  bySession (): IterableIterator<Set<Stream>> {
    return this.sessions.values()
  }

  * [Symbol.iterator] (): IterableIterator<Stream> {
    for (const streams of this.sessions.values()) yield * streams
  }
}
