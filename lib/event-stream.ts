import { constants as http2Constants } from 'node:http2'
import type { Http2ServerResponse, ServerHttp2Stream } from 'node:http2'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import type { SseMessage, SseSerializer } from './types'
import type { OpenStreams } from './open-streams'
import { createCompressor, FLUSH, type Compressor, type SseEncoding } from './compression'
import { HEARTBEAT_FRAME, frameComment, frameEvent, frameRetry } from './framing'
import {
  FST_SSE_CLIENT_CLOSED, FST_SSE_FROZEN_CLIENT, FST_SSE_SLOW_CLIENT, FST_SSE_STREAM_ENDED, FST_SSE_SERVER_CLOSING
} from './errors'

export type RawResponse = ServerResponse | Http2ServerResponse

// Frames produced without yielding to the event loop are written together, up to this many characters.
const FLUSH_AT = 16 * 1024

interface DrainWait {
  promise: Promise<void>
  resolve: () => void
}

/**
 * One open event stream: the handle `reply.sse()` returns. It owns the stream's state (what waits to be
 * written, whether the client is behind, whether it is closed) and writes to the HTTP/2 stream itself,
 * or to the HTTP/1.1 response.
 */
export class EventStream<Message extends SseMessage = SseMessage> {
  /** The id the client last received (`Last-Event-ID` header, or the query fallback), or `undefined`. */
  readonly lastEventId: string | undefined

  /** @internal Heartbeat ticks since the last write. */
  quietTicks = 0
  /** @internal False once the response is finished or the connection gone. */
  transportOpen = true
  /** @internal When writes started waiting for the client (ms since the epoch), or 0. */
  blockedSince = 0
  /** @internal Called once when the stream ends (a channel lets go of its subscriber). */
  onClose: (() => void) | undefined
  /** @internal Called before the stream's own send() and comment(): a channel writes what it owes first. */
  beforeOwnWrite: (() => void) | undefined
  /** @internal The client's address, when streams are limited per address. */
  address = ''

  // Made on first use of `signal`: a channel subscriber that never asks costs no controller.
  private controller: AbortController | undefined
  private closeReason: Error | undefined
  private readonly res: RawResponse
  // The HTTP/2 stream itself, so writes skip the compatibility layer; the response for HTTP/1.1.
  private readonly target: ServerHttp2Stream | ServerResponse
  // Where frames are written: the target, or a compressor piped into it.
  private sink: Writable
  private compressor: Compressor | undefined
  private flushKind = 0
  private readonly http2: boolean
  private readonly log: FastifyBaseLogger
  private readonly serializer: SseSerializer
  private readonly openStreams: OpenStreams
  private pending = ''
  private flushScheduled = false
  private needsDrain = false
  private drainListened = false
  private ended = false
  private drainWait: DrainWait | undefined
  // A replay may hold more than maxBufferedBytes: it is bounded by the history. Until the client has taken it,
  // live writes are bounded above it.
  private replayAllowance = 0

  /** @internal */
  constructor (res: RawResponse, log: FastifyBaseLogger, lastEventId: string | undefined,
    serializer: SseSerializer, openStreams: OpenStreams) {
    this.lastEventId = lastEventId
    this.res = res
    this.http2 = 'stream' in res
    this.target = 'stream' in res ? res.stream : res
    this.sink = this.target
    this.log = log
    this.serializer = serializer
    this.openStreams = openStreams
  }

  /** Aborted when the stream ends, for any reason: `signal.reason` says which (an error with a `code`). */
  get signal (): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.closeReason !== undefined) this.controller.abort(this.closeReason)
    }
    return this.controller.signal
  }

  /** True once the stream is closed: nothing more will be written. */
  get closed (): boolean {
    return this.ended
  }

  /** Bytes written but not yet taken by the client, and frames not yet written. */
  get bufferedBytes (): number {
    if (!this.transportOpen) return 0
    const compressor = this.compressor
    return this.pending.length + this.sink.writableLength +
      (compressor === undefined ? 0 : compressor.readableLength + this.target.writableLength)
  }

  /**
   * Sends one event. Returns `false` when the client is behind (wait for `drained()` before sending more)
   * or the stream is closed. An invalid event throws and nothing is written.
   */
  send (message: Message): boolean {
    const frame = frameEvent(message, this.serializer)
    this.beforeOwnWrite?.()
    return this.enqueue(frame, true)
  }

  /** Sends a comment line, which clients ignore. Returns like `send()`. */
  comment (text: string): boolean {
    const frame = frameComment(text)
    this.beforeOwnWrite?.()
    return this.enqueue(frame, true)
  }

  /** Resolves when what was sent has been handed to the client, or the stream closed. Never rejects. */
  drained (): Promise<void> {
    if (!this.needsDrain || this.ended) return Promise.resolve()
    if (this.drainWait === undefined) {
      let release!: () => void
      const promise = new Promise<void>((resolve) => { release = resolve })
      this.drainWait = { promise, resolve: release }
    }
    return this.drainWait.promise
  }

  /** Ends the stream after what was sent; the client's EventSource reconnects unless told otherwise. */
  close (): void {
    this.end(new FST_SSE_STREAM_ENDED())
  }

  /** @internal Writes the headers (and `retry:`), or ends at once for HEAD or a client already gone. */
  open (statusCode: number, headers: OutgoingHttpHeaders, retry: number | undefined, headOnly: boolean,
    encoding?: SseEncoding): void {
    const res = this.res
    if (this.transportGone()) {
      this.abandon(new FST_SSE_CLIENT_CLOSED())
      return
    }
    // Listeners cost memory on every idle stream: 'close' is the one every stream needs (on, not once: once
    // allocates a bound wrapper), 'drain' is added when a write first waits, and only HTTP/1.1 can emit 'error'.
    this.res.on('close', () => this.onTransportClose())
    if (!this.http2) this.res.on('error', onResponseError)
    // The client's `open` event must fire before the first event, however long that takes: the headers go now.
    if (this.http2) {
      // Straight to the stream: the compatibility layer would keep a second copy of them for the stream's life.
      res.statusCode = statusCode
      ;(this.target as ServerHttp2Stream).respond({ ...headers, ':status': statusCode })
    } else {
      res.writeHead(statusCode, headers)
      ;(res as ServerResponse).flushHeaders()
    }
    if (headOnly) {
      this.end(new FST_SSE_STREAM_ENDED())
      return
    }
    if (encoding !== undefined) {
      const compressor = createCompressor(encoding)
      compressor.on('error', onCompressorError)
      compressor.pipe(this.target)
      this.compressor = compressor
      this.flushKind = FLUSH[encoding]
      this.sink = compressor
    }
    this.openStreams.add(this)
    if (retry !== undefined) this.enqueue(frameRetry(retry), false)
  }

  /** @internal The stream will never open: aborts its signal so that a source already made lets go. */
  abandon (reason: Error): void {
    this.ended = true
    this.transportOpen = false
    this.finish(reason)
  }

  /** @internal Sends an event from a pulled source: the source is paused instead of being bounded. */
  sendPulled (message: unknown): boolean {
    return this.enqueue(frameEvent(message as SseMessage, this.serializer), false)
  }

  /** @internal Logs what made a source fail, unless it is the stream's own end, then closes. */
  fail (error: unknown): void {
    if (this.ended) {
      this.log.debug({ err: error }, 'fastify-sse-h2: the event source ended with an error after the stream closed')
    } else {
      this.log.error({ err: error }, 'fastify-sse-h2: the event source failed; the stream was closed')
    }
    this.close()
  }

  /** @internal Writes what is pending, unless the client is behind. */
  flush (): void {
    this.flushScheduled = false
    if (this.needsDrain || this.pending === '' || this.ended) return
    const chunk = this.pending
    this.pending = ''
    this.writeOut(chunk)
  }

  /**
   * @internal Writes a channel's events at once, behind what is pending, even while the client is behind:
   * a chunk shared by every subscriber costs a reference per subscriber, not a copy. A client that has not
   * taken more than maxBufferedBytes of what it was sent before is dropped instead: one burst may exceed the
   * bound, falling behind by it may not.
   */
  writeLive (chunk: string | Buffer): void {
    if (this.bufferedBytes > this.openStreams.maxBufferedBytes + this.replayAllowance) {
      this.dropSlowClient()
      return
    }
    // What the stream's own send() queued while the client was behind goes first.
    if (this.pending !== '') {
      this.writeOut(this.pending)
      this.pending = ''
    }
    this.writeOut(chunk)
  }

  /** @internal Queues a channel's events ahead of the stream's own, in the order they were published. */
  queueLive (text: string): void {
    this.enqueue(text, false)
  }

  /** @internal Writes what a subscriber missed, which the history bounds, before any live event. */
  writeReplay (text: string): void {
    if (this.ended || text === '') return
    this.replayAllowance = text.length
    this.pending += text
    this.flush()
  }

  /** @internal Called by the heartbeat when writes have waited for the client longer than writeTimeout. */
  dropFrozenClient (waitedMs: number): void {
    this.log.warn({ waitedMs, writeTimeout: this.openStreams.writeTimeout },
      'fastify-sse-h2: a client took nothing for longer than writeTimeout; its stream was closed')
    this.destroy(new FST_SSE_FROZEN_CLIENT(waitedMs))
  }

  /** @internal Called by the heartbeat when the stream has been quiet long enough. */
  heartbeat (): void {
    // A comment may go ahead of frames still pending: clients ignore it wherever it falls between frames.
    this.writeOut(HEARTBEAT_FRAME)
  }

  /** @internal Ends the stream because the server is closing, and lets its connection go. */
  shutdown (): void {
    const session = this.http2 ? (this.target as ServerHttp2Stream).session : undefined
    const socket = this.http2 ? undefined : (this.res as ServerResponse).socket
    this.end(new FST_SSE_SERVER_CLOSING())
    // Node 20 keeps an idle HTTP/2 session, and an HTTP/1.1 keep-alive socket, open past server.close().
    if (session !== undefined && !session.closed) session.close()
    // A compressor hands its last bytes over later: the socket ends after them.
    if (socket != null) {
      if (this.compressor === undefined) socket.end()
      else this.res.once('finish', () => socket.end())
    }
  }

  /** @internal Drops the stream at once, with whatever was waiting for the client. */
  destroy (reason: Error): void {
    if (this.transportOpen) {
      if (this.http2) (this.target as ServerHttp2Stream).close(http2Constants.NGHTTP2_CANCEL)
      else (this.res as ServerResponse).destroy()
    }
    if (!this.ended) {
      this.ended = true
      this.pending = ''
      this.finish(reason)
    }
  }

  private writeOut (chunk: string | Buffer): void {
    this.quietTicks = 0
    const written = this.sink.write(chunk)
    this.compressor?.flush(this.flushKind)
    if (!written && !this.needsDrain) {
      this.needsDrain = true
      this.blockedSince = Date.now()
      if (!this.drainListened) {
        this.drainListened = true
        this.sink.on('drain', () => this.onDrain())
      }
    }
  }

  private enqueue (frame: string, bounded: boolean): boolean {
    if (this.ended) return false
    this.pending += frame
    if (bounded && this.pending.length + this.sink.writableLength > this.openStreams.maxBufferedBytes) {
      this.dropSlowClient()
      return false
    }
    if (this.pending.length >= FLUSH_AT) {
      this.flush()
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(flushLater, this)
    }
    return !this.needsDrain
  }

  private dropSlowClient (): void {
    const buffered = this.bufferedBytes
    const limit = this.openStreams.maxBufferedBytes
    this.log.warn({ bufferedBytes: buffered, maxBufferedBytes: limit },
      'fastify-sse-h2: a client fell behind by more than maxBufferedBytes; its stream was closed')
    this.destroy(new FST_SSE_SLOW_CLIENT(buffered, limit))
  }

  private end (reason: Error): void {
    if (this.ended) return
    this.ended = true
    if (this.transportOpen) {
      // Through writeOut, so that a client that never takes these last bytes is still dropped after writeTimeout.
      if (this.pending !== '') this.writeOut(this.pending)
      // A compressor ends the target through its pipe, once its last bytes are out.
      if (this.compressor !== undefined) this.compressor.end()
      else this.res.end()
    }
    this.pending = ''
    this.finish(reason)
  }

  private finish (reason: Error): void {
    // A stream closed by the server stays registered until its connection lets go (so that writeTimeout still
    // applies); its quiet count can never reach a heartbeat, so nothing is written after the end.
    this.quietTicks = -Infinity
    this.closeReason = reason
    this.controller?.abort(reason)
    this.releaseDrainWait()
    this.onClose?.()
  }

  private onDrain (): void {
    this.needsDrain = false
    this.blockedSince = 0
    this.replayAllowance = 0
    this.flush()
    if (!this.needsDrain) this.releaseDrainWait()
  }

  private releaseDrainWait (): void {
    const wait = this.drainWait
    if (wait === undefined) return
    this.drainWait = undefined
    wait.resolve()
  }

  private onTransportClose (): void {
    this.transportOpen = false
    this.compressor?.destroy()
    this.openStreams.delete(this)
    if (!this.ended) {
      this.ended = true
      this.pending = ''
      this.finish(new FST_SSE_CLIENT_CLOSED())
    }
  }

  private transportGone (): boolean {
    if (this.http2) {
      const stream = this.target as ServerHttp2Stream
      return stream.destroyed || stream.closed
    }
    const socket: Socket | null = (this.res as ServerResponse).socket
    return socket == null || socket.destroyed
  }
}

// Node emits 'error' on an HTTP/1.1 response only for a write after its end, which the stream never does;
// without a listener such an error would crash the process, so one is there. (HTTP/2's compatibility layer
// never forwards errors to the response.)
/* c8 ignore next */
function onResponseError (): void {}

function flushLater (stream: EventStream): void {
  stream.flush()
}

// zlib fails only on a write after its end, which the stream never does (it stops writing once it ends); a
// listener is there so that such an error could never crash the process.
/* c8 ignore next */
function onCompressorError (): void {}
