import { constants, createBrotliCompress, createGzip, type BrotliCompress, type Gzip } from 'node:zlib'

/** Content encodings the plugin can compress streams with. */
export type SseEncoding = 'br' | 'gzip'
export type Compressor = BrotliCompress | Gzip

export const ENCODINGS: readonly SseEncoding[] = ['br', 'gzip']

/**
 * The first of the encodings we offer (in our order of preference) that the client accepts. A `q=0` refuses
 * an encoding; other weights are not ranked: every client that takes both takes brotli well.
 */
export function chooseEncoding (acceptEncoding: string | string[] | undefined, offered: readonly SseEncoding[]):
SseEncoding | undefined {
  if (typeof acceptEncoding !== 'string') return undefined
  const accepted = new Set<string>()
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [name, ...params] = part.split(';').map((piece) => piece.trim())
    if (!params.some((param) => /^q=0(\.0*)?$/.test(param))) accepted.add(name)
  }
  return offered.find((encoding) => accepted.has(encoding) || accepted.has('*'))
}

// A stream lives long and holds its compressor for its whole life: small windows keep that memory at
// about 64 KiB a stream (zlib's defaults take 256 KiB), and events of one stream are alike within them.
export function createCompressor (encoding: SseEncoding): Compressor {
  if (encoding === 'br') {
    return createBrotliCompress({
      params: {
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
        [constants.BROTLI_PARAM_QUALITY]: 5,
        [constants.BROTLI_PARAM_LGWIN]: 16
      }
    })
  }
  return createGzip({ windowBits: 13, memLevel: 6 })
}

/**
 * The flush that pushes out what a compressor holds, so that no event waits for more to come. (Gzip's default
 * flush, a full one, would also forget the window that makes later events small.)
 */
export const FLUSH: Record<SseEncoding, number> = { br: constants.BROTLI_OPERATION_FLUSH, gzip: constants.Z_SYNC_FLUSH }
