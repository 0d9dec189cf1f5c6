import type { EventStream } from './transport'

// The timer ticks at least four times an interval, so a stream is never silent for longer than the interval:
// it gets its comment between 3/4 and 1 interval after its last write.
const TICKS_PER_BEAT = 4

/**
 * One timer for every open stream, running only while there are streams: it writes heartbeats to the quiet
 * ones, and drops those whose client has taken nothing of what waits for it for longer than writeTimeout.
 */
export class Heartbeat {
  private readonly tickMs: number
  private readonly ticksPerBeat: number
  private readonly writeTimeout: number
  private readonly streams: ReadonlySet<EventStream>
  private timer: NodeJS.Timeout | undefined

  /** Both intervals in ms, 0 for off; at least one of them is on. */
  constructor (heartbeatInterval: number, writeTimeout: number, streams: ReadonlySet<EventStream>) {
    const periods = [heartbeatInterval, writeTimeout].filter((ms) => ms > 0).map((ms) => ms / TICKS_PER_BEAT)
    this.tickMs = Math.min(...periods)
    this.ticksPerBeat = heartbeatInterval > 0 ? Math.round(heartbeatInterval / this.tickMs) : Infinity
    this.writeTimeout = writeTimeout > 0 ? writeTimeout : Infinity
    this.streams = streams
  }

  start (): void {
    this.timer = setInterval(tick, this.tickMs, this)
    // Open streams keep their server alive; the timer alone must not keep the process running.
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** @internal */
  tick (): void {
    const now = Date.now()
    for (const stream of this.streams) {
      if (stream.bufferedBytes === 0) {
        stream.stalledSince = 0
        if (++stream.quietTicks >= this.ticksPerBeat) stream.heartbeat()
        continue
      }
      // Bytes wait for the client (a closed stream's last ones too): it gets no heartbeat, which would only pile up
      // behind them, and is dropped once it has taken nothing of them for writeTimeout.
      const taken = stream.takenBytes
      if (stream.stalledSince === 0 || taken !== stream.takenAtCheck) {
        stream.takenAtCheck = taken
        stream.stalledSince = now
      } else if (now - stream.stalledSince >= this.writeTimeout) {
        stream.dropFrozenClient(now - stream.stalledSince)
      }
    }
  }
}

function tick (heartbeat: Heartbeat): void {
  heartbeat.tick()
}
