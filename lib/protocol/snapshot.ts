import type { ChannelEvent, SseEvent, SseSerializer } from '../core/events'

// The snapshot of an event: what subscription filters see. A channel takes it as JSON when the event is published
// (snapshotOf), every store keeps that text, and hands it back as a SnapshotEvent, which parses it when a filter asks.

/**
 * The event as subscription filters will see it, as JSON, taken when it is published: an app that reuses one
 * message object for its next publish cannot change what filters see, and every store hands back the same shape.
 * `data` is what JSON makes of it; text and bytes are kept as the client receives them, and a value JSON cannot
 * hold (a BigInt, for a serializer that can) as the serializer's text.
 */
export function snapshotOf (event: SseEvent, dataText: string | undefined, serializer: SseSerializer): string {
  let json = ''
  if (event.event !== undefined) json += ',"event":' + JSON.stringify(event.event)
  if (event.retry !== undefined) json += ',"retry":' + String(event.retry)
  if (event.comment !== undefined) json += ',"comment":' + JSON.stringify(event.comment)
  if (dataText !== undefined) json += ',"data":' + dataJson(event.data, dataText, serializer)
  return json === '' ? '{}' : '{' + json.slice(1) + '}'
}

function dataJson (data: unknown, dataText: string, serializer: SseSerializer): string {
  if (typeof data === 'string' || data instanceof Uint8Array) return JSON.stringify(dataText)
  // The frame's text is JSON already: no second serialization.
  if (serializer === JSON.stringify) return dataText
  try {
    const json = JSON.stringify(data) as string | undefined
    if (json !== undefined) return json
  } catch {}
  return JSON.stringify(dataText)
}

/**
 * A stored event for stores to hand out (a `StoredEvent`). Its `event` is parsed from the snapshot only when a filter
 * asks for it, once, and frozen: every filter sees the same event, and none can change it for the others.
 */
export class SnapshotEvent {
  readonly id: string
  readonly position: string
  readonly frame: string
  private readonly snapshot: string
  private parsed: ChannelEvent | undefined

  constructor (id: string, position: string, body: string, snapshot: string) {
    this.id = id
    this.position = position
    this.frame = 'id: ' + id + '\n' + body
    this.snapshot = snapshot
  }

  get event (): ChannelEvent {
    if (this.parsed === undefined) {
      const event = JSON.parse(this.snapshot) as ChannelEvent
      event.id = this.id
      this.parsed = deepFreeze(event)
    }
    return this.parsed
  }
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
    Object.freeze(value)
  }
  return value
}
