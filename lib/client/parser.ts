// The event stream's parsing rules, as the HTML standard gives them ("9.2.6 Interpreting an event stream"): lines end
// with CRLF, LF or CR; a blank line dispatches; `:` starts a comment; a field's value loses one leading space; `data`
// lines join with LF; an `id` holding NUL is ignored; `retry` is taken only if it is all ASCII digits; an event the
// stream ends in the middle of is dropped. Tested against eventsource-parser (test/client-parser.test.ts).

/** What the parser hands over. */
export interface ParserHandler {
  /** A blank line: `data` is undefined when the event had no `data:` line (nothing is dispatched then). */
  dispatch: (type: string, data: string | undefined, lastEventId: string) => void
  retry: (ms: number) => void
  comment: (text: string) => void
}

const LF = 10
const COLON = 58
const SPACE = 32
const DIGITS = /^[0-9]+$/

/** Parses the text of one event stream, fed in pieces as they arrive (decoded already). */
export class EventStreamParser {
  /** The last event id, as the stream set it so far (kept across events, as EventSource keeps it). */
  lastEventId: string
  private readonly handler: ParserHandler
  // The start of a line whose end has not arrived yet.
  private pending = ''
  // A piece ended with CR: an LF starting the next one belongs to that line end.
  private afterCR = false
  private type = ''
  private data = ''
  private dataLines = 0
  private id: string

  constructor (handler: ParserHandler, lastEventId = '') {
    this.handler = handler
    this.lastEventId = lastEventId
    this.id = lastEventId
  }

  feed (piece: string): void {
    if (piece === '') return
    const text = this.pending === '' ? piece : this.pending + piece
    const length = text.length
    let start = this.afterCR && text.charCodeAt(0) === LF ? 1 : 0
    this.afterCR = false
    let lf = text.indexOf('\n', start)
    // Most streams hold no CR at all: looked for once, then only past the ones found.
    let cr = text.indexOf('\r', start)
    while (lf !== -1 || cr !== -1) {
      let end: number
      let next: number
      if (cr === -1 || (lf !== -1 && lf < cr)) {
        end = lf
        next = lf + 1
      } else {
        end = cr
        next = cr + 1
        if (next === length) this.afterCR = true
        else if (text.charCodeAt(next) === LF) next++
      }
      this.line(text, start, end)
      start = next
      if (lf !== -1 && lf < start) lf = text.indexOf('\n', start)
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start)
    }
    this.pending = start === length ? '' : text.slice(start)
  }

  /** The stream ended: an event not finished by a blank line is dropped, and the parser is ready for the next stream. */
  reset (): void {
    this.pending = ''
    this.afterCR = false
    this.type = ''
    this.data = ''
    this.dataLines = 0
    this.id = this.lastEventId
  }

  private line (text: string, start: number, end: number): void {
    if (start === end) {
      this.dispatch()
      return
    }
    // The fields a server sends, found without cutting the line first.
    if (text.startsWith('data:', start)) {
      this.addData(text.slice(text.charCodeAt(start + 5) === SPACE ? start + 6 : start + 5, end))
      return
    }
    if (text.charCodeAt(start) === COLON) {
      this.handler.comment(text.slice(text.charCodeAt(start + 1) === SPACE ? start + 2 : start + 1, end))
      return
    }
    const line = text.slice(start, end)
    const colon = line.indexOf(':')
    const name = colon === -1 ? line : line.slice(0, colon)
    const value = colon === -1 ? '' : line.slice(line.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1)
    switch (name) {
      case 'data':
        this.addData(value)
        break
      case 'event':
        this.type = value
        break
      case 'id':
        if (!value.includes('\0')) this.id = value
        break
      case 'retry':
        if (DIGITS.test(value)) this.handler.retry(Number(value))
        break
      // Any other field is ignored.
    }
  }

  private addData (value: string): void {
    this.data = this.dataLines === 0 ? value : this.data + '\n' + value
    this.dataLines++
  }

  private dispatch (): void {
    this.lastEventId = this.id
    const data = this.dataLines === 0 ? undefined : this.data
    const type = this.type === '' ? 'message' : this.type
    this.type = ''
    this.data = ''
    this.dataLines = 0
    this.handler.dispatch(type, data, this.lastEventId)
  }
}
