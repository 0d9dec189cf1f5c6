import type { ServerHttp2Stream } from 'node:http2'
import type { ServerResponse } from 'node:http'
import type { Writable } from 'node:stream'
import type { FastifyError } from 'fastify'
import type { StreamGroup } from './stream-group'
import { createCompressor, FLUSH, type Compressor, type SseEncoding } from './compression'
import { currentTurn } from './turns'
import { targetOf, type RawResponse } from './response'
import { FST_SSE_SLOW_CLIENT } from '../core/errors'

/**
 * Where a stream is in its life. `unanswered`: its headers wait (a channel stream waits for its store to say where it
 * starts), and so do its frames. `open`: headers sent, counted as open. `ended`: nothing more will be written; its
 * last bytes may still be on their way to the client. A close asked for while events are still owed to the stream (a
 * replay being read) is its `reason` (StreamTransport), set before it ends.
 */
export type Phase = 'unanswered' | 'open' | 'ended'

// Bits of a stream's flags.
const CONNECTED = 1
const NEEDS_DRAIN = 2
const DRAIN_LISTENED = 4
const FLUSH_SCHEDULED = 8
// Frames produced without yielding to the event loop are written together, up to this many characters.
const FLUSH_AT = 16 * 1024

interface DrainWait {
  promise: Promise<void>
  resolve: () => void
}

/**
 * The bytes of one event stream: what waits to be written, the sink it goes to (the HTTP/2 stream itself, or the
 * HTTP/1.1 response; a compressor in front of either), the wait for 'drain', and `admit()`, the one rule for a
 * client that is behind. Its life (open, close, heartbeats) is StreamTransport's, which builds on it.
 */
export abstract class StreamWrites {
  /** @internal */
  protected phase: Phase = 'unanswered'
  /** @internal Flags, one field for all (fields cost every open stream 8 bytes each): see the accessors below. */
  protected flags = CONNECTED
  /** @internal */
  protected readonly res: RawResponse
  /** @internal The HTTP/2 stream itself, so writes skip the compatibility layer; the response for HTTP/1.1. */
  protected readonly target: ServerHttp2Stream | ServerResponse
  /** @internal */
  protected readonly group: StreamGroup
  /** @internal */
  protected pending = ''
  /** @internal Bytes handed to the sink, in all. */
  protected written = 0
  /** @internal Heartbeat ticks since the last write. */
  protected quietTicks = 0
  private compressor: Compressor | undefined
  private flushKind = 0
  private drainWait: DrainWait | undefined
  // Characters admitted during the turn `turnOfWrites`, and during the one before it.
  private writtenThisTurn = 0
  private writtenLastTurn = 0
  private turnOfWrites = -1
  // The largest single write over maxBufferedBytes still on its way (an event, a replay): the client is not
  // behind for taking its time over it.
  private allowance = 0

  /** @internal */
  constructor (res: RawResponse, group: StreamGroup) {
    this.res = res
    this.target = targetOf(res)
    this.group = group
  }

  /** @internal On HTTP/2 its target is the HTTP/2 stream, not the response. */
  protected get http2 (): boolean {
    return this.target !== this.res
  }

  private get sink (): Writable {
    return this.compressor ?? this.target
  }

  /** @internal False once the response is finished or the connection gone. */
  protected get connected (): boolean {
    return (this.flags & CONNECTED) !== 0
  }

  /** @internal The sink said to wait for 'drain'. */
  protected get needsDrain (): boolean {
    return (this.flags & NEEDS_DRAIN) !== 0
  }

  /** Bytes not yet taken by the client: frames not yet written, and written ones it has not read. */
  get bufferedBytes (): number {
    if (!this.connected) return 0
    const compressor = this.compressor
    return this.pending.length + this.heldBytes() + this.sink.writableLength +
      (compressor === undefined ? 0 : compressor.readableLength + this.target.writableLength)
  }

  /** @internal How much of what was written the transport (or compressor) has taken: grows while the client reads. */
  get takenBytes (): number {
    return this.written - this.sink.writableLength
  }

  /** Resolves when what was sent has been handed to the client, or the stream closed. Never rejects. */
  drained (): Promise<void> {
    if (!this.needsDrain || this.phase === 'ended') return Promise.resolve()
    if (this.drainWait === undefined) {
      let release!: () => void
      const promise = new Promise<void>((resolve) => { release = resolve })
      this.drainWait = { promise, resolve: release }
    }
    return this.drainWait.promise
  }

  /** @internal Writes what is pending, unless the client is behind. */
  flush (): void {
    this.flags &= ~FLUSH_SCHEDULED
    if (this.needsDrain || this.pending === '' || this.phase !== 'open') return
    const chunk = this.pending
    this.pending = ''
    this.writeOut(chunk)
  }

  /** @internal Adds a frame to what is pending: written at the end of this tick, or at once past FLUSH_AT. */
  protected enqueue (frame: string): void {
    this.pending += frame
    if (this.pending.length >= FLUSH_AT) {
      this.flush()
    } else if ((this.flags & FLUSH_SCHEDULED) === 0) {
      this.flags |= FLUSH_SCHEDULED
      process.nextTick(flushLater, this)
    }
  }

  /**
   * What the stream holds back of its own for now (behind a replay being read): not taken by the client, it counts
   * against it only while the client holds back what it was given (it waits for the store, not for the client).
   */
  protected abstract heldBytes (): number

  /** Drops a client that is behind (slow) or takes nothing (frozen). */
  protected abstract drop (reason: FastifyError, details: object, message: string): void

  /** @internal Puts a compressor of `encoding` between the stream and its target. */
  protected compress (encoding: SseEncoding): void {
    const compressor = createCompressor(encoding)
    compressor.on('error', onCompressorError)
    compressor.pipe(this.target)
    this.compressor = compressor
    this.flushKind = FLUSH[encoding]
  }

  /**
   * The one rule for a client that is behind: it is when what it was given before the last two turns of the event
   * loop, and has not taken, is more than maxBufferedBytes (plus the allowance of an oversized write on its way).
   * A bounded write to such a client drops it; any other write is admitted. False if nothing may be written.
   */
  protected admit (size: number, bounded: boolean): boolean {
    if (this.phase === 'ended') return false
    const turn = currentTurn()
    if (this.turnOfWrites !== turn) {
      this.writtenLastTurn = this.turnOfWrites === turn - 1 ? this.writtenThisTurn : 0
      this.writtenThisTurn = 0
      this.turnOfWrites = turn
    }
    const limit = this.group.maxBufferedBytes
    if (bounded && this.waitingFromEarlierTurns() > limit + this.allowance) {
      const buffered = this.bufferedBytes
      this.drop(new FST_SSE_SLOW_CLIENT(buffered, limit), { bufferedBytes: buffered, maxBufferedBytes: limit },
        'a client fell behind by more than maxBufferedBytes')
      return false
    }
    this.writtenThisTurn += size
    if (size > limit && size > this.allowance) this.allowance = size
    return true
  }

  /**
   * What the client was given before the last two turns and has not taken. A compressor's input, and what waits to
   * be handed to it, count only while the client holds its output back: until then they wait for the CPU (a busy
   * thread pool), not for the client; and so do the stream's own frames held behind a replay (they wait for the store).
   */
  private waitingFromEarlierTurns (): number {
    const compressor = this.compressor
    const target = this.target
    const held = target.writableNeedDrain ? this.heldBytes() : 0
    const waiting = compressor === undefined
      ? this.pending.length + held + target.writableLength
      : compressor.readableLength + target.writableLength +
        (target.writableNeedDrain ? this.pending.length + held + compressor.writableLength : 0)
    return waiting - this.writtenThisTurn - this.writtenLastTurn
  }

  /** @internal */
  protected writeOut (text: string | Buffer): void {
    // Encoded here rather than by the sink (as it would): the stats then count bytes as they are, for nothing more,
    // where measuring a string's UTF-8 length would read it once more.
    const chunk = typeof text === 'string' ? Buffer.from(text) : text
    this.quietTicks = 0
    this.written += chunk.length
    this.group.stats.bytesSent += chunk.length
    const written = this.sink.write(chunk)
    this.compressor?.flush(this.flushKind)
    if (!written && !this.needsDrain) {
      this.flags |= NEEDS_DRAIN
      if ((this.flags & DRAIN_LISTENED) === 0) {
        this.flags |= DRAIN_LISTENED
        this.sink.on('drain', () => this.onDrain())
      }
    }
  }

  /**
   * @internal Writes what is pending, then ends the response: a compressor ends it through its pipe, once its last
   * bytes are out.
   */
  protected endResponse (): void {
    // Through writeOut, so that a client that never takes these last bytes is still dropped after writeTimeout.
    if (this.pending !== '') this.writeOut(this.pending)
    if (this.compressor !== undefined) this.compressor.end()
    else this.res.end()
  }

  /** @internal The connection let go of the response: nothing can be written any more. */
  protected disconnected (): void {
    this.flags &= ~CONNECTED
    this.compressor?.destroy()
  }

  /** @internal */
  protected releaseDrainWait (): void {
    const wait = this.drainWait
    if (wait === undefined) return
    this.drainWait = undefined
    wait.resolve()
  }

  private onDrain (): void {
    this.flags &= ~NEEDS_DRAIN
    this.flush()
    if (this.needsDrain) return
    this.allowance = 0
    this.releaseDrainWait()
  }
}

function flushLater (stream: StreamWrites): void {
  stream.flush()
}

// zlib fails only on a write after its end, which the stream never does (it stops writing once it ends); a
// listener is there so that such an error could never crash the process.
/* c8 ignore next */
function onCompressorError (): void {}
