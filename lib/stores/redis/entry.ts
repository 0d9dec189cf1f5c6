import type { EventToStore, StoredEvent } from '../store'
import { SnapshotEvent } from '../../protocol/snapshot'

// A channel event as a Redis stream entry, stored once. Its frame is kept as it is; its snapshot (what filters
// see) is most often what the frame says, read back: then only which way the data is read back is stored, in the
// field's name. Otherwise, the snapshot is stored beside the frame.
//   i: the publisher's own id, when it gave one
//   j: the frame; the snapshot is its fields, data as JSON text (the serializer's JSON.stringify output)
//   t: the frame; the snapshot is its fields, data as a string
//   b, e: the frame and the snapshot, as they are

const OWN_ID = 'i'
const JSON_DATA = 'j'
const TEXT_DATA = 't'
const BODY = 'b'
const SNAPSHOT = 'e'

/** The fields of the entry of an event, after the own id (`i`), which the append script adds. */
export function entryFields ({ body, snapshot }: EventToStore): string[] {
  if (snapshotOfBody(body, false) === snapshot) return [JSON_DATA, body]
  if (snapshotOfBody(body, true) === snapshot) return [TEXT_DATA, body]
  return [BODY, body, SNAPSHOT, snapshot]
}

/** The event an entry holds. */
export function entryEvent (entryId: string, fields: readonly string[]): StoredEvent {
  let id = entryId
  let body = ''
  let snapshot: string | undefined
  let dataIsText = false
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]
    if (name === OWN_ID) id = fields[i + 1]
    else if (name === SNAPSHOT) snapshot = fields[i + 1]
    else {
      body = fields[i + 1]
      dataIsText = name === TEXT_DATA
    }
  }
  return new SnapshotEvent(id, entryId, body, snapshot ?? snapshotOfBody(body, dataIsText))
}

/**
 * The snapshot a frame's fields make, in the order and the form `snapshotOf()` (lib/snapshot.ts) writes them: an
 * entry keeps its snapshot apart whenever this is not exactly the one published, so the two need not agree on more.
 */
function snapshotOfBody (body: string, dataIsText: boolean): string {
  let event: string | undefined
  let retry: string | undefined
  let comment: string | undefined
  let data: string | undefined
  let start = 0
  for (let end = body.indexOf('\n'); end > start; end = body.indexOf('\n', start)) {
    const line = body.slice(start, end)
    start = end + 1
    if (line.startsWith(': ')) comment = comment === undefined ? line.slice(2) : comment + '\n' + line.slice(2)
    else if (line.startsWith('data: ')) data = data === undefined ? line.slice(6) : data + '\n' + line.slice(6)
    else if (line.startsWith('event: ')) event = line.slice(7)
    else if (line.startsWith('retry: ')) retry = line.slice(7)
    else return ''
  }
  let json = ''
  if (event !== undefined) json += ',"event":' + JSON.stringify(event)
  if (retry !== undefined) json += ',"retry":' + retry
  if (comment !== undefined) json += ',"comment":' + JSON.stringify(comment)
  if (data !== undefined) json += ',"data":' + (dataIsText ? JSON.stringify(data) : data)
  return json === '' ? '{}' : '{' + json.slice(1) + '}'
}

/** A live message, as the append script publishes it: the entry's id, the id of the entry before it, its fields. */
export interface LiveMessage {
  readonly id: string
  readonly previous: string
  readonly fields: readonly string[]
}

/** Reads `<id> <previous id> <fields as JSON>`. */
export function liveMessage (text: string): LiveMessage {
  const first = text.indexOf(' ')
  const second = text.indexOf(' ', first + 1)
  return { id: text.slice(0, first), previous: text.slice(first + 1, second), fields: JSON.parse(text.slice(second + 1)) as string[] }
}
