import { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { createParser, type EventSourceMessage } from 'eventsource-parser'

/** How the client of a fake response reads: all it was given each turn, one write a turn, or nothing. */
export type ReadMode = 'fast' | 'slow' | 'stalled'

/**
 * An HTTP/1.1-shaped response whose client the test drives: what is written is taken by the client only when it
 * reads, at most once a turn of the event loop (as a network would), and parsed with eventsource-parser. Its
 * `writableLength` is what the client has not taken yet, as on a real socket.
 */
export class FakeResponse extends Writable {
  readonly socket = { destroyed: false, end: (): void => {} }
  readonly req = { socket: this.socket }
  statusCode = 200
  headers: Record<string, unknown> | undefined
  readonly events: EventSourceMessage[] = []
  mode: ReadMode = 'fast'
  /** True once the client went away (disconnect()), or the server dropped the connection. */
  gone = false
  /** Bytes the client has taken. */
  takenBytes = 0
  private readonly held: Array<[string | Buffer, () => void]> = []
  private readScheduled = false
  private readonly parser = createParser({ onEvent: (event) => this.events.push(event) })

  constructor (highWaterMark = 64) {
    super({ highWaterMark, decodeStrings: false })
    this.on('close', () => {
      this.gone = true
      this.socket.destroyed = true
    })
  }

  writeHead (statusCode: number, headers: Record<string, unknown>): this {
    this.statusCode = statusCode
    this.headers = headers
    return this
  }

  flushHeaders (): void {}

  override _write (chunk: string | Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.held.push([chunk, callback])
    this.scheduleRead()
  }

  // Whatever waits in the stream's buffer reaches the client together, as on a socket.
  override _writev (chunks: Array<{ chunk: string | Buffer }>, callback: () => void): void {
    this.held.push([chunks.map(({ chunk }) => chunk.toString()).join(''), callback])
    this.scheduleRead()
  }

  setMode (mode: ReadMode): void {
    this.mode = mode
    this.scheduleRead()
  }

  /** The client goes away: its connection closes. */
  disconnect (): void {
    this.destroy()
  }

  private scheduleRead (): void {
    if (this.readScheduled || this.mode === 'stalled' || this.held.length === 0) return
    this.readScheduled = true
    setImmediate(() => {
      this.readScheduled = false
      this.takeTurn()
    })
  }

  private takeTurn (): void {
    // A fast client takes all there is, with what the stream hands over as it takes (its buffered writes).
    const most = this.mode === 'fast' ? Infinity : this.mode === 'slow' ? 1 : 0
    for (let taken = 0; taken < most && this.held.length > 0; taken++) {
      const [chunk, callback] = this.held.shift() as [string | Buffer, () => void]
      this.parser.feed(chunk.toString())
      this.takenBytes += Buffer.byteLength(chunk)
      callback()
    }
    this.scheduleRead()
  }
}

export interface LoggedRecord {
  level: 'error' | 'warn'
  msg: string
  object: unknown
}

/** A logger that keeps warnings and errors, for tests that build streams without Fastify. */
export function recordingLogger (records: LoggedRecord[] = []): FastifyBaseLogger & { records: LoggedRecord[] } {
  const keep = (level: LoggedRecord['level']) => (object: unknown, msg?: string) => {
    records.push({ level, msg: typeof object === 'string' ? object : msg ?? '', object })
  }
  const ignore = (): void => {}
  const log = {
    records,
    level: 'debug',
    fatal: keep('error'),
    error: keep('error'),
    warn: keep('warn'),
    info: ignore,
    debug: ignore,
    trace: ignore,
    silent: ignore,
    child: () => log
  }
  return log as unknown as FastifyBaseLogger & { records: LoggedRecord[] }
}
