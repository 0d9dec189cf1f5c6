import { EventEmitter } from 'node:events'
import { waitUntil } from './wait'

export interface LogRecord {
  level: number
  msg?: string
  reqId?: string
  err?: { type?: string, message?: string, code?: string, stack?: string }
  [key: string]: unknown
}

export const WARN = 40
export const ERROR = 50

/** A pino destination that keeps every line, parsed, so that tests can assert on what was logged. */
export class LogRecorder extends EventEmitter {
  readonly records: LogRecord[] = []
  readonly lines: string[] = []

  write (line: string): void {
    this.lines.push(line)
    this.records.push(JSON.parse(line) as LogRecord)
    this.emit('record')
  }

  /** Records at `level` or above (40 warn, 50 error). */
  atLeast (level: number): LogRecord[] {
    return this.records.filter((record) => record.level >= level)
  }

  withMessage (text: string): LogRecord[] {
    return this.records.filter((record) => record.msg?.includes(text) === true)
  }

  async waitFor (predicate: (record: LogRecord) => boolean, what: string, timeoutMs?: number): Promise<LogRecord> {
    return await waitUntil(this, 'record', () => this.records.find(predicate), `a log line: ${what}`, timeoutMs)
  }
}
