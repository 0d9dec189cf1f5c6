import type { MissedData } from './types.ts'

const BASE64_BYTE = new Map<number, number>()
for (const [index, char] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) {
  BASE64_BYTE.set(char.charCodeAt(0), index)
}

/** One event of the stream, as EventSource's MessageEvent has it (`data`, `lastEventId`, `type`), and its `value`. */
export class StreamEvent<Value = unknown, Type extends string = string> extends Event {
  declare readonly type: Type
  /** The event's data, as the stream carried it (text). */
  readonly data: string
  /** The id of this event, or of the last one that had one (EventSource's `lastEventId`). */
  readonly lastEventId: string
  /** The origin of the stream's URL. */
  readonly origin: string
  private readonly binary: boolean
  private decoded: { value: Value } | undefined

  /** @internal */
  constructor (type: Type, data: string, lastEventId: string, origin: string, binary: boolean) {
    super(type)
    this.data = data
    this.lastEventId = lastEventId
    this.origin = origin
    this.binary = binary
  }

  /** The same as `lastEventId`, under the name the server gives it (`{ id }`). */
  get id (): string {
    return this.lastEventId
  }

  /**
   * The data read back: the bytes of a binary event type (option `binary`), else the data parsed as JSON (what the
   * server's serializer and event schemas write), else the text itself (a string the server sent as it is). Read when
   * asked, once. A string that reads as JSON (`'42'`) comes back parsed: read `data` for text.
   */
  get value (): Value {
    this.decoded ??= { value: (this.binary ? fromBase64(this.data) : fromJson(this.data)) as Value }
    return this.decoded.value
  }
}

/**
 * The `missed` event: the server no longer held the events after the id the client came back with. What it still
 * held follows; `oldestId` is the oldest of them (`null`: none), and `channel` the channel it happened on.
 */
export class MissedEvent extends StreamEvent<MissedData, 'missed'> {
  get channel (): string {
    return this.value.channel
  }

  get oldestId (): string | null {
    return this.value.oldestId
  }
}

/**
 * An `error` event: the connection failed or ended. The client reconnects (`readyState` CONNECTING) unless the answer
 * says not to (`readyState` CLOSED): 204, a 4xx other than 429, a response that is not an event stream.
 */
export class StreamErrorEvent extends Event {
  /** The HTTP status, when a response came. */
  readonly status: number | undefined
  /** Why the server refused the stream (`FST_SSE_TOO_MANY_STREAMS`, ...), when it did. */
  readonly code: string | undefined
  /** What failed: a network error, the stream's silence past twice its heartbeat, a `headers()` that threw. */
  readonly error: unknown
  /** The milliseconds until the next attempt, or undefined when none will be made. */
  readonly retryIn: number | undefined
  readonly message: string

  /** @internal */
  constructor (message: string, details: { status?: number, code?: string, error?: unknown, retryIn?: number }) {
    super('error')
    this.message = message
    this.status = details.status
    this.code = details.code
    this.error = details.error
    this.retryIn = details.retryIn
  }
}

/** Base64 (what the server writes bytes as) to bytes; what is not base64 is skipped. */
export function fromBase64 (text: string): Uint8Array {
  const bytes = new Uint8Array(Math.floor(text.length * 3 / 4))
  let length = 0
  let bits = 0
  let count = 0
  for (let i = 0; i < text.length; i++) {
    const value = BASE64_BYTE.get(text.charCodeAt(i))
    if (value === undefined) continue
    bits = (bits << 6) | value
    count += 6
    if (count >= 8) {
      count -= 8
      bytes[length++] = (bits >> count) & 0xff
    }
  }
  return bytes.subarray(0, length)
}

function fromJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
