import type { SseEvent, SseSerializer } from '../fastify/types'

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
