import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { FST_SSE_NOT_ACCEPTABLE } from '../core/errors'
import { EVENT_STREAM } from './event-schema'
import { describe } from '../core/describe'

const JSON_TYPE = 'application/json'

/** What a request is answered with, on a route that serves JSON or an event stream; undefined: neither. */
type Representation = 'json' | 'event-stream' | undefined

interface Weight {
  q: number
  /** 3: the type itself, 2: `type/*`, 1: `* /*`, 0: no range matched. */
  specificity: number
}

/**
 * Chooses by the request's `Accept` (RFC 9110 12.5.1: each type gets the weight of the most specific range that
 * names it). JSON is preferred where both weigh the same, unless the event stream is asked for by name
 * (EventSource sends `Accept: text/event-stream`); no `Accept` at all takes anything, so JSON.
 */
export function negotiate (accept: string | string[] | undefined): Representation {
  if (accept === undefined || accept === '') return 'json'
  const ranges = parseAccept(Array.isArray(accept) ? accept.join(',') : accept)
  const json = weightOf(ranges, JSON_TYPE)
  const stream = weightOf(ranges, EVENT_STREAM)
  if (stream.q > 0 && stream.specificity === 3 && stream.q >= json.q) return 'event-stream'
  if (json.q > 0) return 'json'
  return stream.q > 0 ? 'event-stream' : undefined
}

/** `request.wantsEventStream`: the request is for the event stream rather than for JSON. */
export function wantsEventStream (this: FastifyRequest): boolean {
  return negotiate(this.headers.accept) === 'event-stream'
}

/** The onRequest hook of a route with `negotiate`: 406 for a request that accepts neither; `Vary: accept`. */
export function refuseUnacceptable (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  // Caches must keep the two representations apart.
  reply.header('vary', 'accept')
  const accept = request.headers.accept
  done(negotiate(accept) === undefined ? new FST_SSE_NOT_ACCEPTABLE(describe(accept)) : undefined)
}

interface MediaRange {
  type: string
  subtype: string
  q: number
}

function parseAccept (accept: string): MediaRange[] {
  const ranges: MediaRange[] = []
  for (const part of accept.split(',')) {
    const [range, ...params] = part.split(';')
    const [type, subtype] = range.trim().toLowerCase().split('/')
    if (type === '' || subtype === undefined) continue
    let q = 1
    for (const param of params) {
      const [name, value] = param.split('=').map((piece) => piece.trim())
      if (name.toLowerCase() === 'q') q = Number(value)
    }
    // A weight that is not a number from 0 to 1 is not one: the range counts as q=1.
    ranges.push({ type, subtype, q: Number.isFinite(q) && q >= 0 && q <= 1 ? q : 1 })
  }
  return ranges
}

function weightOf (ranges: MediaRange[], mediaType: string): Weight {
  const [type, subtype] = mediaType.split('/')
  let best: Weight = { q: 0, specificity: 0 }
  for (const range of ranges) {
    const specificity = range.type === type && range.subtype === subtype
      ? 3
      : range.type === type && range.subtype === '*' ? 2 : range.type === '*' && range.subtype === '*' ? 1 : 0
    if (specificity > best.specificity) best = { q: range.q, specificity }
  }
  return best
}
