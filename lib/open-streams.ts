import type { EventStream } from './event-stream'
import type { StreamLimits } from './stream-limits'
import { Heartbeat } from './heartbeat'
import { FST_SSE_SERVER_CLOSING } from './errors'

// On shutdown, streams get this long to hand their last bytes to their clients before they are dropped.
export const SHUTDOWN_GRACE_MS = 1000

/** The streams of one plugin instance whose connection is open: what the heartbeat and shutdown walk. */
export class OpenStreams {
  readonly maxBufferedBytes: number
  readonly writeTimeout: number
  readonly limits: StreamLimits | undefined
  private readonly streams = new Set<EventStream>()
  private readonly heartbeat: Heartbeat | undefined
  private whenEmpty: (() => void) | undefined

  constructor (heartbeatInterval: number, maxBufferedBytes: number, writeTimeout: number, limits?: StreamLimits) {
    this.maxBufferedBytes = maxBufferedBytes
    this.writeTimeout = writeTimeout
    this.limits = limits
    this.heartbeat = heartbeatInterval > 0 || writeTimeout > 0
      ? new Heartbeat(heartbeatInterval, writeTimeout, this.streams)
      : undefined
  }

  /** How many streams are open. */
  get size (): number {
    return this.streams.size
  }

  add (stream: EventStream): void {
    this.streams.add(stream)
    this.limits?.opened(stream.address)
    if (this.streams.size === 1) this.heartbeat?.start()
  }

  delete (stream: EventStream): void {
    if (!this.streams.delete(stream)) return
    this.limits?.closed(stream.address)
    if (this.streams.size > 0) return
    this.heartbeat?.stop()
    this.whenEmpty?.()
  }

  /** Ends every stream, then resolves once their connections are closed, dropping laggards after a grace. */
  async closeAll (): Promise<void> {
    for (const stream of this.streams) stream.shutdown()
    if (this.streams.size === 0) return
    const empty = new Promise<void>((resolve) => { this.whenEmpty = resolve })
    const grace = setTimeout(() => {
      for (const stream of this.streams) stream.destroy(new FST_SSE_SERVER_CLOSING())
    }, SHUTDOWN_GRACE_MS)
    await empty
    clearTimeout(grace)
    this.whenEmpty = undefined
  }
}
