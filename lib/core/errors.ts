import createError from '@fastify/error'

// Every error the plugin raises, in one place: a user can `instanceof` them and switch on `code`.
// Codes are FST_SSE_* so they never collide with @fastify/sse's FST_ERR_SSE_* (fastify errors
// match `instanceof` by code).

export const FST_SSE_INVALID_OPTION = createError<'FST_SSE_INVALID_OPTION', [string, string, string]>(
  'FST_SSE_INVALID_OPTION', 'fastify-sse-h2: option %s must be %s, got %s', 500, TypeError)

export const FST_SSE_INVALID_SOURCE = createError<'FST_SSE_INVALID_SOURCE', [string]>(
  'FST_SSE_INVALID_SOURCE',
  'fastify-sse-h2: reply.sse() takes an iterable, an async iterable, a Readable, a channel, or a function ' +
  'returning one of them; got %s', 500, TypeError)

export const FST_SSE_INVALID_EVENT = createError<'FST_SSE_INVALID_EVENT', [string]>(
  'FST_SSE_INVALID_EVENT',
  'fastify-sse-h2: an event must be a string or an object with data, id, event, retry or comment; got %s',
  500, TypeError)

export const FST_SSE_UNKNOWN_EVENT_FIELD = createError<'FST_SSE_UNKNOWN_EVENT_FIELD', [string]>(
  'FST_SSE_UNKNOWN_EVENT_FIELD',
  'fastify-sse-h2: an event has no field %s: its fields are data, id, event, retry and comment (to send an ' +
  'object, give it as the data: { data: value })', 500, TypeError)

export const FST_SSE_INVALID_ID = createError<'FST_SSE_INVALID_ID', [string]>(
  'FST_SSE_INVALID_ID', 'fastify-sse-h2: an event id must be a finite number, or a string that every client can send ' +
  'back as it is: printable ASCII and tab, at most 256 characters, no space or tab at either end, not read as a ' +
  'cursor; got %s', 500, TypeError)

export const FST_SSE_INVALID_EVENT_NAME = createError<'FST_SSE_INVALID_EVENT_NAME', [string]>(
  'FST_SSE_INVALID_EVENT_NAME', 'fastify-sse-h2: an event name must be a string without CR or LF; got %s', 500,
  TypeError)

export const FST_SSE_INVALID_RETRY = createError<'FST_SSE_INVALID_RETRY', [string]>(
  'FST_SSE_INVALID_RETRY', 'fastify-sse-h2: retry must be a non-negative integer of milliseconds, got %s',
  500, TypeError)

export const FST_SSE_INVALID_COMMENT = createError<'FST_SSE_INVALID_COMMENT', [string]>(
  'FST_SSE_INVALID_COMMENT', 'fastify-sse-h2: a comment must be a string, got %s', 500, TypeError)

export const FST_SSE_INVALID_SERIALIZED = createError<'FST_SSE_INVALID_SERIALIZED', [string]>(
  'FST_SSE_INVALID_SERIALIZED', 'fastify-sse-h2: the serializer must return a string, it returned %s',
  500, TypeError)

export const FST_SSE_SERIALIZER_FAILED = createError<'FST_SSE_SERIALIZER_FAILED', [string, { cause: unknown }]>(
  'FST_SSE_SERIALIZER_FAILED', 'fastify-sse-h2: the serializer threw (%s); nothing of the event was written', 500, TypeError)

export const FST_SSE_ALREADY_SENT = createError<'FST_SSE_ALREADY_SENT', [string, string]>(
  'FST_SSE_ALREADY_SENT', 'fastify-sse-h2: reply.sse() was called on a reply that was already sent, in route %s %s; ' +
  'it returned a closed stream', 500)

// The reasons a stream's `signal` aborts with. No stack: they describe an outcome, not a bug.
export const FST_SSE_CLIENT_CLOSED = createError<'FST_SSE_CLIENT_CLOSED', []>(
  'FST_SSE_CLIENT_CLOSED', 'fastify-sse-h2: the client closed the stream', 499, Error, false)

export const FST_SSE_STREAM_ENDED = createError<'FST_SSE_STREAM_ENDED', []>(
  'FST_SSE_STREAM_ENDED', 'fastify-sse-h2: the server ended the stream', 200, Error, false)

export const FST_SSE_SERVER_CLOSING = createError<'FST_SSE_SERVER_CLOSING', []>(
  'FST_SSE_SERVER_CLOSING', 'fastify-sse-h2: the server is closing', 503, Error, false)

export const FST_SSE_SLOW_CLIENT = createError<'FST_SSE_SLOW_CLIENT', [number, number]>(
  'FST_SSE_SLOW_CLIENT',
  'fastify-sse-h2: %d bytes were waiting for the client, over maxBufferedBytes (%d); the stream was closed ' +
  'so that the client reconnects and resumes from its last event id', 503, Error, false)

export const FST_SSE_EXPIRED = createError<'FST_SSE_EXPIRED', []>(
  'FST_SSE_EXPIRED', 'fastify-sse-h2: the stream reached its expiresAt; it was closed with a retry: so that the client ' +
  'comes back (with fresh credentials)', 200, Error, false)

export const FST_SSE_MAX_AGE = createError<'FST_SSE_MAX_AGE', []>(
  'FST_SSE_MAX_AGE', 'fastify-sse-h2: the stream reached maxStreamAge; it was closed with a retry: so that the client ' +
  'reconnects, perhaps to another instance, and resumes from its last event id', 200, Error, false)

export const FST_SSE_INVALID_CHANNEL = createError<'FST_SSE_INVALID_CHANNEL', [string]>(
  'FST_SSE_INVALID_CHANNEL', 'fastify-sse-h2: a channel name must be a non-empty string, got %s', 500, TypeError)

export const FST_SSE_CHANNEL_CLOSED = createError<'FST_SSE_CHANNEL_CLOSED', [string]>(
  'FST_SSE_CHANNEL_CLOSED', 'fastify-sse-h2: channel %s is closed', 500)

export const FST_SSE_FROZEN_CLIENT = createError<'FST_SSE_FROZEN_CLIENT', [number]>(
  'FST_SSE_FROZEN_CLIENT',
  'fastify-sse-h2: the client took nothing for %d ms while data waited for it (writeTimeout); the stream was closed ' +
  'so that the client reconnects and resumes from its last event id', 503, Error, false)

export const FST_SSE_STORE_UNAVAILABLE = createError<'FST_SSE_STORE_UNAVAILABLE', [string, { cause: unknown }?]>(
  'FST_SSE_STORE_UNAVAILABLE', 'fastify-sse-h2: the store could not take the event (%s); nothing was published', 503)

export const FST_SSE_STORE_TIMEOUT = createError<'FST_SSE_STORE_TIMEOUT', [number, { cause: unknown }?]>(
  'FST_SSE_STORE_TIMEOUT',
  'fastify-sse-h2: the store did not answer within commandTimeout (%d ms): the event may have been published, and ' +
  'may still reach subscribers (a retry may send it twice: give events ids of your own)', 504)

export const FST_SSE_CHANNEL_UNAVAILABLE = createError<'FST_SSE_CHANNEL_UNAVAILABLE', [string, string, { cause: unknown }?]>(
  'FST_SSE_CHANNEL_UNAVAILABLE',
  'fastify-sse-h2: a stream of channel %s was refused, as its store could not say where the stream starts (%s); try ' +
  'again after Retry-After', 503)

export const FST_SSE_CONTROL_UNAVAILABLE = createError<'FST_SSE_CONTROL_UNAVAILABLE', [string, { cause: unknown }?]>(
  'FST_SSE_CONTROL_UNAVAILABLE',
  'fastify-sse-h2: the store could not reach the instances (%s): the action was sent to none of them', 503)

export const FST_SSE_IOREDIS_MISSING = createError<'FST_SSE_IOREDIS_MISSING', [{ cause: unknown }?]>(
  'FST_SSE_IOREDIS_MISSING',
  'fastify-sse-h2: RedisStore needs ioredis, which is not installed: npm install ioredis (an optional peer ' +
  'dependency of fastify-sse-h2)', 500)

export const FST_SSE_TOO_MANY_STREAMS = createError<'FST_SSE_TOO_MANY_STREAMS', [string, number]>(
  'FST_SSE_TOO_MANY_STREAMS', 'fastify-sse-h2: too many open streams (%s: %d); try again after Retry-After', 503)

export const FST_SSE_UNDECLARED_EVENT = createError<'FST_SSE_UNDECLARED_EVENT', [string]>(
  'FST_SSE_UNDECLARED_EVENT', 'fastify-sse-h2: the event schema declares no event of type %s', 500, TypeError)

export const FST_SSE_SCHEMA_MISMATCH = createError<'FST_SSE_SCHEMA_MISMATCH', [string, string]>(
  'FST_SSE_SCHEMA_MISMATCH',
  'fastify-sse-h2: this route declares an event schema, and channel %s has %s: a channel\'s events are framed once, by ' +
  'its own schema, so the route\'s could not shape them: give the channel the route\'s schema ' +
  '(app.sse.channel(name, { schema }))', 500)

export const FST_SSE_NOT_ACCEPTABLE = createError<'FST_SSE_NOT_ACCEPTABLE', [string]>(
  'FST_SSE_NOT_ACCEPTABLE',
  'fastify-sse-h2: this route serves application/json or text/event-stream, and the request accepts neither ' +
  '(accept: %s)', 406)

export const FST_SSE_ALREADY_REGISTERED = createError<'FST_SSE_ALREADY_REGISTERED', [string]>(
  'FST_SSE_ALREADY_REGISTERED',
  'fastify-sse-h2: the plugin is already registered %s; register it once for a context and everything in it ' +
  '(set per-route options in config.sse)', 500)

export const FST_SSE_NOT_REGISTERED = createError<'FST_SSE_NOT_REGISTERED', [string]>(
  'FST_SSE_NOT_REGISTERED',
  'fastify-sse-h2: %s was used where the plugin is not registered (it is registered in an encapsulated context ' +
  'only): register it in this context or a parent of it, such as the root', 500)

export const FST_SSE_NOT_A_CHANNEL = createError<'FST_SSE_NOT_A_CHANNEL', [string, string]>(
  'FST_SSE_NOT_A_CHANNEL',
  'fastify-sse-h2: %s takes a channel (app.sse.channel(name)), or { channel, filter } in a list of channels; got %s', 500,
  TypeError)

export const FST_SSE_TOO_MANY_CHANNELS = createError<'FST_SSE_TOO_MANY_CHANNELS', [number, number]>(
  'FST_SSE_TOO_MANY_CHANNELS',
  'fastify-sse-h2: a stream carries at most %d channels (the cursor that resumes them all must fit in a ' +
  'Last-Event-ID); this one would carry %d', 500)

export const FST_SSE_CURSOR_ID = createError<'FST_SSE_CURSOR_ID', [string]>(
  'FST_SSE_CURSOR_ID',
  'fastify-sse-h2: on a stream of several channels, the id of every event is the cursor that resumes them all: ' +
  'its own events take no id (put yours in the data); got id %s', 500, TypeError)
