import type { FastifyBaseLogger, FastifyError } from 'fastify'
import { FST_SSE_TOO_MANY_STREAMS } from '../core/errors'

// A flood of refusals is one warning now and then, not one a request.
const WARN_EVERY_MS = 10_000

/**
 * The most streams open at once, overall and per client address, and what a stream past them is told. A stream takes
 * its slot when it is admitted, before any store has answered for it (a reconnect storm is bounded, however long its
 * channels take to say where they start), and holds it until its connection lets go, or until it ends unopened.
 */
export class StreamLimits {
  readonly maxStreams: number
  readonly maxStreamsPerAddress: number
  readonly retryAfter: number
  // Each stream holding a slot, and its client's address.
  private readonly holders = new Map<object, string>()
  private readonly perAddress = new Map<string, number>()
  private refusedSinceWarning = 0
  private lastWarning = -Infinity

  constructor (maxStreams: number, maxStreamsPerAddress: number, retryAfter: number) {
    this.maxStreams = maxStreams
    this.maxStreamsPerAddress = maxStreamsPerAddress
    this.retryAfter = retryAfter
  }

  /** Why a new stream from that address may not be admitted now, or undefined if it may. */
  refusal (address: string): FastifyError | undefined {
    if (this.holders.size >= this.maxStreams) return new FST_SSE_TOO_MANY_STREAMS('maxStreams', this.maxStreams)
    if ((this.perAddress.get(address) ?? 0) >= this.maxStreamsPerAddress) {
      return new FST_SSE_TOO_MANY_STREAMS('maxStreamsPerAddress', this.maxStreamsPerAddress)
    }
    return undefined
  }

  /** The stream, admitted, holds a slot from now on. */
  take (stream: object, address: string): void {
    this.holders.set(stream, address)
    if (this.maxStreamsPerAddress === Infinity) return
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1)
  }

  /** The stream lets go of its slot, if it holds one. */
  release (stream: object): void {
    const address = this.holders.get(stream)
    if (address === undefined || !this.holders.delete(stream) || this.maxStreamsPerAddress === Infinity) return
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
      'fastify-sse-h2: new streams refused, too many open: an EventSource is told when to come back (200, a retry:, ' +
      'the end), other clients get 503 and Retry-After')
    this.lastWarning = now
    this.refusedSinceWarning = 0
  }
}
