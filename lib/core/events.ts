/**
 * One server-sent event: at least one of these fields, and no other (an object with none, or another, is refused).
 * `Data` is the type of its data: what an event schema declares, with a type provider.
 */
export interface SseEvent<Data = unknown> {
  /**
   * The event's data. A string is written as it is, one `data:` line per line of text;
   * a Buffer or Uint8Array is written base64-encoded; any other value goes through the serializer
   * (or the event schema's).
   * `undefined` writes no `data:` line (the client then dispatches no event).
   */
  data?: Data
  /** The event id: the client sends it back as `Last-Event-ID` when it reconnects. `0` and `''` are sent. */
  id?: string | number
  /** The event type: the client's `addEventListener(type)` receives it. Default on the client: `message`. */
  event?: string
  /** Milliseconds the client waits before reconnecting, from now on. */
  retry?: number
  /** A comment line (`: text`): clients ignore it; proxies see traffic. */
  comment?: string
}

/**
 * An event, or a plain string that is sent as the data of a `message` event (where the data may be any
 * string: not with an event schema that declares other data).
 */
export type SseMessage<Data = unknown> = SseEvent<Data> | (string extends Data ? string : never)

/**
 * Turns a value that is not a string into the text of `data:` lines. It is also given the event's type, as a
 * second argument (`undefined` for a `message` event).
 */
export type SseSerializer = (data: unknown) => string

/** The fields of an event besides its type and data. */
export type SseEventFields = Omit<SseEvent, 'event' | 'data'>

/** What a function source is given. */
export interface SseSourceContext {
  /** Aborted when the stream ends: the client went away, the server closes, or the stream was closed. */
  signal: AbortSignal
  /** The id the client last received (`Last-Event-ID`, or the query fallback), or `undefined`. */
  lastEventId: string | undefined
}

/** What a filter is given: the event as it was published, with its id; read-only. */
export interface ChannelEvent extends SseEvent {
  id: string
}
