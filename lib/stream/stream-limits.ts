import type { FastifyBaseLogger, FastifyError } from 'fastify'
import { FST_SSE_TOO_MANY_STREAMS } from '../core/errors'

// A flood of refusals is one warning now and then, not one a request.
const WARN_EVERY_MS = 10_000

/** The most streams open at once, overall and per client address, and what a stream past them is told. */
export class StreamLimits {
  readonly maxStreams: number
  readonly maxStreamsPerAddress: number
  readonly retryAfter: number
  private readonly perAddress = new Map<string, number>()
  private refusedSinceWarning = 0
  private lastWarning = -Infinity

  constructor (maxStreams: number, maxStreamsPerAddress: number, retryAfter: number) {
    this.maxStreams = maxStreams
    this.maxStreamsPerAddress = maxStreamsPerAddress
    this.retryAfter = retryAfter
  }

  /** Why a new stream from that address may not open now, or undefined if it may. */
  refusal (open: number, address: string): FastifyError | undefined {
    if (open >= this.maxStreams) return new FST_SSE_TOO_MANY_STREAMS('maxStreams', this.maxStreams)
    if ((this.perAddress.get(address) ?? 0) >= this.maxStreamsPerAddress) {
      return new FST_SSE_TOO_MANY_STREAMS('maxStreamsPerAddress', this.maxStreamsPerAddress)
    }
    return undefined
  }

  opened (address: string): void {
    if (this.maxStreamsPerAddress === Infinity) return
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1)
  }

  closed (address: string): void {
    if (this.maxStreamsPerAddress === Infinity) return
    const count = (this.perAddress.get(address) as number) - 1
    if (count === 0) this.perAddress.delete(address)
    else this.perAddress.set(address, count)
  }

  /** Counts a refusal: a warning when refusals start, then at most one every WARN_EVERY_MS with the count since. */
  noteRefusal (log: FastifyBaseLogger): void {
    this.refusedSinceWarning++
    const now = Date.now()
    if (now - this.lastWarning < WARN_EVERY_MS) return
    log.warn({ refused: this.refusedSinceWarning, maxStreams: this.maxStreams, maxStreamsPerAddress: this.maxStreamsPerAddress },
      'fastify-sse-h2: new streams refused with 503: too many open')
    this.lastWarning = now
    this.refusedSinceWarning = 0
  }
}
