import { isUtf8 } from 'node:buffer'
import type { FastifyRequest } from 'fastify'
import { parseCursor } from './cursor-encoding'

// Ids we send are short; a longer value was not sent by us, and is not worth keeping or logging. Except the cursors
// of streams of several channels (up to MAX_CURSOR_LENGTH), which are taken if they begin as cursors: one cut short is
// read as far as it goes, and the channels it does not place are told `missed`.
export const MAX_LAST_EVENT_ID_LENGTH = 256
// Control characters other than tab (which an id may hold) never appear in an id we sent.
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL_CHARACTER = /[\0-\x08\n-\x1f\x7f]/
const NON_ASCII = /[^\0-\x7f]/

/**
 * The last event id the client received: the `Last-Event-ID` header (what EventSource sends when it
 * reconnects), else the query parameter (what a page that reloads can send), else undefined.
 * A value we could not have sent is ignored with a debug log that holds its length, never its text.
 */
export function readLastEventId (request: FastifyRequest, queryParameter: string | false): string | undefined {
  const header = request.headers['last-event-id']
  if (header !== undefined && header !== '') {
    return accept(request, isRepeated(request, header) ? [header] : decodeHeader(header), 'header')
  }
  if (queryParameter === false) return undefined
  const query = request.query as Record<string, unknown> | null | undefined
  const value = query?.[queryParameter]
  if (value === undefined || value === '') return undefined
  return accept(request, value, 'query')
}

// Node joins a repeated header into one value ("1, 2"), which EventSource never sends: a comma is the sign to
// count the header's lines.
function isRepeated (request: FastifyRequest, header: string | string[]): boolean {
  if (!header.includes(',')) return false
  const raw = request.raw.rawHeaders
  let lines = 0
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 13 && raw[i].toLowerCase() === 'last-event-id') lines++
  }
  return lines > 1
}

function decodeHeader (header: string | string[]): unknown {
  if (typeof header !== 'string' || !NON_ASCII.test(header)) return header
  // Node hands header values over as latin1; EventSource sends the id as UTF-8. (Looking for U+FFFD in the
  // decoded text instead would refuse an id that holds one.)
  const bytes = Buffer.from(header, 'latin1')
  return isUtf8(bytes) ? bytes.toString('utf8') : undefined
}

function accept (request: FastifyRequest, value: unknown, from: 'header' | 'query'): string | undefined {
  let problem: string | undefined
  if (typeof value !== 'string') {
    problem = value === undefined ? 'is not UTF-8' : 'is repeated'
  } else if (value.length > MAX_LAST_EVENT_ID_LENGTH && parseCursor(value) === undefined) {
    problem = `is longer than ${MAX_LAST_EVENT_ID_LENGTH} characters`
  } else if (CONTROL_CHARACTER.test(value)) {
    problem = 'has control characters'
  }
  if (problem === undefined) return value as string
  request.log.debug({ lastEventId: { from, length: typeof value === 'string' ? value.length : undefined } },
    `fastify-sse-h2: ignored a last event id that ${problem}`)
  return undefined
}
