import type { SseEvent, SseMessage, SseSerializer } from '../core/events'
import type { EventSerializer } from './event-schema'
import {
  FST_SSE_INVALID_COMMENT,
  FST_SSE_INVALID_EVENT,
  FST_SSE_INVALID_EVENT_NAME,
  FST_SSE_INVALID_ID,
  FST_SSE_INVALID_RETRY,
  FST_SSE_INVALID_SERIALIZED,
  FST_SSE_SERIALIZER_FAILED,
  FST_SSE_UNKNOWN_EVENT_FIELD
} from '../core/errors'
import { describe } from '../core/describe'
import { MAX_LAST_EVENT_ID_LENGTH } from './last-event-id'
import { isCursor } from './cursor-encoding'

// Turns events into the text/event-stream wire format (WHATWG HTML, "Server-sent events", 9.2.5/9.2.6).
// Pure: no I/O. Every frame ends with a blank line, so frames can be concatenated and written together.

// The parser splits lines on CRLF, CR or LF alone, so all three must start a new field line:
// splitting only on LF would let a lone CR in user data forge a field of its own.
const LINE_BREAK = /\r\n|\r|\n/
const HAS_LINE_BREAK = /[\r\n]/

/** The bytes of a heartbeat: a comment line the client ignores. */
export const HEARTBEAT_FRAME = ':\n\n'

export function frameEvent (message: SseMessage, serializer: SseSerializer): string {
  if (typeof message === 'string') return dataLines(message) + '\n'
  const event = toEvent(message)
  // The usual event, data of one line and perhaps an id, is one concatenation: the hot path of a stream.
  const { id, data } = event
  if (event.event === undefined && event.comment === undefined && event.retry === undefined && data !== undefined) {
    if (typeof data === 'string') {
      if (isOneLine(data)) return id === undefined ? 'data: ' + data + '\n\n' : 'id: ' + eventId(id) + '\ndata: ' + data + '\n\n'
    } else {
      return serializedFrame(id, data, serializer)
    }
  }
  let frame = event.id === undefined ? '' : 'id: ' + eventId(event.id) + '\n'
  frame += fieldLines(event, data === undefined ? undefined : dataText(data, serializer, event.event))
  // Never empty: toEvent() refuses an event with no field.
  return frame + '\n'
}

/** The frame of an event of data to serialize, and perhaps an id. */
function serializedFrame (id: SseEvent['id'], data: unknown, serializer: SseSerializer): string {
  const idLine = id === undefined ? '' : 'id: ' + eventId(id) + '\n'
  const text = dataText(data, serializer, undefined)
  // JSON.stringify escapes every line break: its text (or base64) needs no search for one.
  if (serializer === JSON.stringify) return idLine + 'data: ' + text + '\n\n'
  return idLine + dataLines(text) + '\n'
}

/**
 * The frame of an event without its `id:` line, for a store to put its own id in front, and the text of its data
 * (undefined when it has none). The body is never empty: an event with no other field is a blank line, which
 * ends the id's frame.
 */
export function frameBody (event: SseEvent, serializer: SseSerializer): { body: string, data: string | undefined } {
  const data = event.data === undefined ? undefined : dataText(event.data, serializer, event.event)
  return { body: fieldLines(event, data) + '\n', data }
}

/**
 * A message as an event object. Refuses what is neither a string nor an object, an object with none of the
 * fields (it would write nothing), and an object with a field of another name: most often the data given as the
 * event itself (`publish(request.body)` for `publish({ data: request.body })`), which no client would receive.
 */
export function toEvent (message: SseMessage): SseEvent {
  if (typeof message === 'string') return { data: message }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new FST_SSE_INVALID_EVENT(describe(message))
  }
  // Names compared, values read by name: this runs for every event a stream or a channel sends.
  for (const key in message) {
    if (key !== 'data' && key !== 'id' && key !== 'event' && key !== 'retry' && key !== 'comment') {
      throw new FST_SSE_UNKNOWN_EVENT_FIELD(describe(key))
    }
  }
  if (message.data === undefined && message.id === undefined && message.event === undefined &&
    message.retry === undefined && message.comment === undefined) {
    throw new FST_SSE_INVALID_EVENT(describe(message))
  }
  return message
}

function fieldLines (event: SseEvent, data: string | undefined): string {
  let lines = ''
  const { comment, event: name, retry } = event
  if (comment !== undefined) lines += commentLines(comment)
  if (name !== undefined) lines += 'event: ' + checkEventName(name) + '\n'
  if (retry !== undefined) lines += retryLine(retry)
  if (data !== undefined) lines += dataLines(data)
  return lines
}

export function frameComment (text: string): string {
  return commentLines(text) + '\n'
}

export function frameRetry (retry: number): string {
  return retryLine(retry) + '\n'
}

// Faster than a regular expression on the short strings events hold.
function isOneLine (text: string): boolean {
  return text.indexOf('\n') === -1 && text.indexOf('\r') === -1
}

function dataLines (text: string): string {
  // A single space follows the colon: the parser drops exactly one, so a value that starts with a space survives.
  if (isOneLine(text)) return 'data: ' + text + '\n'
  const lines = text.split(LINE_BREAK)
  let out = ''
  for (let i = 0; i < lines.length; i++) out += 'data: ' + lines[i] + '\n'
  return out
}

function commentLines (text: unknown): string {
  if (typeof text !== 'string') throw new FST_SSE_INVALID_COMMENT(describe(text))
  if (!HAS_LINE_BREAK.test(text)) return ': ' + text + '\n'
  const lines = text.split(LINE_BREAK)
  let out = ''
  for (let i = 0; i < lines.length; i++) out += ': ' + lines[i] + '\n'
  return out
}

export function dataText (data: unknown, serializer: SseSerializer, event: string | undefined): string {
  if (typeof data === 'string') return data
  // SSE carries text only: bytes go as base64, which has no line breaks.
  if (data instanceof Uint8Array) {
    return (Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).toString('base64')
  }
  // Given the event's type too: an event schema may declare a data schema per type.
  let text: unknown
  try {
    text = (serializer as EventSerializer)(data, event)
  } catch (error) {
    // An event type the schema does not declare says so itself.
    if ((error as { code?: string })?.code === 'FST_SSE_UNDECLARED_EVENT') throw error
    throw new FST_SSE_SERIALIZER_FAILED((error as Error)?.message ?? describe(error), { cause: error })
  }
  if (typeof text !== 'string') throw new FST_SSE_INVALID_SERIALIZED(describe(text))
  return text
}

/**
 * The text of an event id, refused unless every client can send it back exactly as sent, in `Last-Event-ID` and in
 * the query fallback: a header value has no control character but tab, and is trimmed of spaces and tabs at its ends;
 * fetch-based clients (the `eventsource` package, polyfills) send it as Latin-1, and cannot send a character past it,
 * where browsers send UTF-8: only ASCII comes back the same from all of them. We read back up to
 * MAX_LAST_EVENT_ID_LENGTH characters, and an id that reads as a cursor would be taken for one.
 */
export function eventId (id: unknown): string {
  if (typeof id === 'number') {
    if (Number.isFinite(id)) return String(id)
    throw new FST_SSE_INVALID_ID(describe(id))
  }
  if (typeof id !== 'string') throw new FST_SSE_INVALID_ID(describe(id))
  // An id with a line break would also end the id field and forge others; the spec ignores ids with NUL.
  const problem = unsendableInId(id)
  if (problem !== undefined) throw new FST_SSE_INVALID_ID(problem)
  return id
}

// A loop: ids are short and most events have one, and a regular expression costs more to call than such a scan
// (callgrind: about 2% of a pulled event's cost on the server).
function unsendableInId (id: string): string | undefined {
  const length = id.length
  if (length === 0) return undefined
  if (length > MAX_LAST_EVENT_ID_LENGTH) return `a string of ${length} characters`
  for (let i = 0; i < length; i++) {
    const code = id.charCodeAt(i)
    if (code < 32) {
      if (code !== 9) return forbiddenCharacter(id)
    } else if (code > 126) {
      return code === 127 ? 'a string with a control character' : 'a string with a character that is not ASCII'
    }
  }
  if (isBlank(id.charCodeAt(0)) || isBlank(id.charCodeAt(length - 1))) return 'a string with a space or tab at one end'
  if (id.charCodeAt(0) === 126 && isCursor(id)) return `${describe(id)}, which reads as a cursor`
  return undefined
}

function isBlank (code: number): boolean {
  return code === 32 || code === 9
}

function checkEventName (event: unknown): string {
  if (typeof event !== 'string') throw new FST_SSE_INVALID_EVENT_NAME(describe(event))
  if (HAS_LINE_BREAK.test(event)) throw new FST_SSE_INVALID_EVENT_NAME(forbiddenCharacter(event))
  return event
}

function retryLine (retry: unknown): string {
  // The parser ignores a retry field that is not all ASCII digits.
  if (!isValidRetry(retry)) throw new FST_SSE_INVALID_RETRY(describe(retry))
  return 'retry: ' + retry + '\n'
}

export function isValidRetry (retry: unknown): retry is number {
  return typeof retry === 'number' && Number.isSafeInteger(retry) && retry >= 0
}

function forbiddenCharacter (value: string): string {
  if (value.includes('\n')) return 'a string with a line feed (\\n)'
  if (value.includes('\r')) return 'a string with a carriage return (\\r)'
  if (value.includes('\0')) return 'a string with a NUL character (\\0)'
  return 'a string with a control character'
}
