// The client's types: its options, and the map of event types to what each event's `value` holds. Shapes only:
// nothing here runs, and nothing imports the server's types (the client loads in a browser on its own).

/** The headers to send: an object, or a function called at every (re)connect (a token can be refreshed). */
export type ClientHeaders = Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>)

/** Where the last event id is kept across page loads: `sessionStorage`, `localStorage`, or anything with these two. */
export interface ClientStorage {
  getItem: (key: string) => string | null
  setItem: (key: string, value: string) => void
}

/** The part of a `fetch()` response the client reads. */
export interface ClientResponse {
  status: number
  headers: { get: (name: string) => string | null }
  body: { getReader: () => { read: () => Promise<{ done: boolean, value?: Uint8Array }>, cancel: (reason?: unknown) => Promise<void> } } | null
}

/** What the client asks `fetch()` for. */
export interface ClientRequest {
  method: string
  headers: Record<string, string>
  body?: string | Uint8Array | ArrayBuffer | URLSearchParams
  signal: AbortSignal
  cache: 'no-store'
  credentials?: 'omit' | 'same-origin' | 'include'
}

/** A `fetch()`: the platform's (the default), or one of your own. */
export type ClientFetch = (url: string, request: ClientRequest) => Promise<ClientResponse>

export interface EventStreamClientOptions<Events extends EventMap = EventMap> {
  /** Sent with every request: an object, or a function called at each (re)connect. */
  headers?: ClientHeaders
  /** @default 'GET' */
  method?: string
  /** A request body (for a `POST` stream), sent again at each reconnect. */
  body?: ClientRequest['body']
  /** Where to start: sent as `Last-Event-ID` (the storage's id, when there is one, wins). */
  lastEventId?: string
  /** Keeps the last event id across reloads, so that a new page resumes exactly. */
  storage?: ClientStorage
  /** The storage's key. @default `fastify-sse-h2:` and the stream's URL */
  storageKey?: string
  /**
   * Bounds of the backoff between reconnects (ms), doubling from `min` up to `max` while attempts fail; a `retry:` of
   * the server or a `Retry-After` is honoured even when longer. @default { min: 1000, max: 30000 }
   */
  retry?: { min?: number, max?: number }
  /** Event types whose data is bytes (written base64 by the server): their `value` is a `Uint8Array`. */
  binary?: ReadonlyArray<keyof Events & string>
  /** `fetch()`'s `credentials`: `include` sends cookies to another origin. @default 'same-origin' */
  credentials?: ClientRequest['credentials']
  /** @default the platform's `fetch` */
  fetch?: ClientFetch
}

/** Event types and the type of each one's `value`. */
export type EventMap = Record<string, unknown>

/** The `data` of a `missed` event: the subscriber's id was not retained; `oldestId` is the oldest event still kept. */
export interface MissedData {
  channel: string
  oldestId: string | null
}

// The type a server message's data arrives as: bytes as a Uint8Array, anything else as JSON reads it back.
type Received<Data> = Data extends Uint8Array ? Uint8Array : Data

/**
 * The event map of a server's messages: `EventsOf<SseMessageOf<Provider, typeof schema>>` (types of `fastify-sse-h2`)
 * gives each event type the type of its data, so that a change of the route's schema breaks the page's compile.
 * An event without a type is a `message`; a message typed only as a string is a `message` of string data.
 */
export type EventsOf<Message> = {
  [M in Exclude<Message, string> as M extends { event: infer Type extends string } ? Type : 'message']:
  M extends { data?: infer Data } ? Received<Data> : never
} & ([Extract<Message, string>] extends [never] ? unknown : { message: string })
