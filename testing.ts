// fastify-sse-h2/testing: open a route's stream with app.inject() and read its events, for your own tests.
export { injectSSE, InjectedStream } from './lib/inject-sse'
export type { InjectSSEOptions, InjectedEvent, InjectableApp } from './lib/inject-sse'
