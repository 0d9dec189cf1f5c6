// fastify-sse-h2/client: loads in a browser as an ES module, without a bundler (every import is relative), and in
// Node.js 20+. It imports nothing of the server side of the package (.dependency-cruiser.cjs checks it).
export { EventStreamClient, type ClientEventMap } from './event-stream-client.ts'
export { StreamEvent, MissedEvent, StreamErrorEvent } from './events.ts'
export { EventStreamParser, type ParserHandler } from './parser.ts'
export type {
  EventStreamClientOptions, EventMap, EventsOf, MissedData, ClientHeaders, ClientStorage, ClientFetch, ClientRequest,
  ClientResponse
} from './types.ts'
