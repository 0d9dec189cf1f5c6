import type { EventStream } from './event-stream'
import type { StreamLimits } from './stream-limits'
import type { ClosingConnections } from './closing-connections'
import { drawRetry, type ShutdownRetry } from './shutdown-retry'
import { Heartbeat } from './heartbeat'

/** The streams of one plugin instance whose connection is open: what the heartbeat and shutdown walk. */
export class OpenStreams {
  readonly maxBufferedBytes: number
  readonly writeTimeout: number
  readonly limits: StreamLimits | undefined
  private readonly streams = new Set<EventStream>()
  private readonly heartbeat: Heartbeat | undefined
  /** True once closeAll() began: a stream that would open after it is refused. */
  closing = false

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
  }

  /**
   * Ends every stream, each told to reconnect after a delay drawn from `retry`, and lets go of their connections:
   * from now on, no stream opens.
   */
  closeAll (connections: ClosingConnections, retry: ShutdownRetry): void {
    this.closing = true
    for (const stream of this.streams) {
      connections.add(stream.response)
      stream.shutdown(drawRetry(retry))
    }
  }
}
