'use strict'

const { readFileSync, writeFileSync, mkdirSync } = require('node:fs')
const { join } = require('node:path')
const os = require('node:os')

const RESULTS = join(__dirname, 'results')

/** A package's version, from its package.json on disk (some packages do not export that file). */
function versionOf (name) {
  try {
    return JSON.parse(readFileSync(join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

function machine () {
  const cpus = os.cpus()
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} (${cpus.length} cores)`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
    versions: {
      'fastify-sse-h2': require('../package.json').version,
      fastify: versionOf('fastify'),
      '@fastify/sse': versionOf('@fastify/sse'),
      'fastify-sse-v2': versionOf('fastify-sse-v2'),
      'better-sse': versionOf('better-sse')
    }
  }
}

function format (value) {
  if (value === undefined) return 'n/a'
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US')
  return value.toFixed(Math.abs(value) >= 10 ? 1 : 2)
}

function cellText (cell) {
  if (cell === undefined) return 'n/a'
  if (cell.median === undefined) return `failed: ${cell.errors[0]}`
  const ratio = cell.ratio === undefined ? '' : ` (${cell.ratio.toFixed(2)}x)`
  const failures = cell.errors.length > 0 ? ` [${cell.errors.length} failed]` : ''
  return `${format(cell.median)}${ratio}${failures}`
}

function table ({ results, scenarios, targets }) {
  const rows = [['scenario', 'unit', ...targets]]
  const extra = (label, unit, cells, key, scale = 1) => {
    rows.push([label, unit, ...targets.map((target) => {
      const value = cells[target]?.[key]
      return value === undefined ? 'n/a' : format(value * scale)
    })])
  }
  for (const [name, cells] of Object.entries(results)) {
    rows.push([name, scenarios[name].unit, ...targets.map((target) => cellText(cells[target]))])
    if (name === 'idle') {
      extra('idle (heap)', 'bytes/stream', cells, 'heap')
      // What a plugin adds to a stream, over what Fastify itself costs one that is held open.
      const floor = cells['fastify-floor']
      if (floor?.median !== undefined) {
        rows.push(['idle: over fastify-floor', 'bytes/stream (RSS)', ...targets.map((target) => {
          const cell = cells[target]
          return cell?.median === undefined || target === 'raw' ? 'n/a' : format(cell.median - floor.median)
        })])
      }
    }
    if (name.startsWith('fanout')) {
      // The limit of a fan-out: what writing each subscriber one preformatted Buffer reaches in the same run.
      const limit = cells['raw-batch']?.median
      if (limit !== undefined) {
        rows.push([`${name}: of raw-batch`, 'ratio', ...targets.map((target) => {
          const value = cells[target]?.median
          return value === undefined || target === 'raw-batch' ? 'n/a' : (value / limit).toFixed(2)
        })])
      }
      extra(`${name}: server CPU`, 'ns/delivery', cells, 'serverCpuNs')
      extra(`${name}: client CPU`, 'ns/delivery', cells, 'clientCpuNs')
      extra(`${name}: publishing`, 'ms', cells, 'publishMs')
    }
    if (name === 'churn') {
      extra('churn: heap after', 'KiB', cells, 'heapAfter', 1 / 1024)
      extra('churn: RSS after', 'KiB', cells, 'rssAfter', 1 / 1024)
    }
  }
  return rows
}

function markdown (rows) {
  const [head, ...body] = rows
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...body.map((row) => `| ${row.join(' | ')} |`)].join('\n')
}

function terminal (rows) {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)))
  return rows.map((row) => row.map((text, column) => String(text).padEnd(widths[column])).join('  ')).join('\n')
}

const COLORS = { raw: '#888888', 'raw-batch': '#444444', 'fastify-floor': '#bcbd22', 'fastify-sse-h2': '#1f77b4', 'fastify-sse-h2+schema': '#9467bd', '@fastify/sse': '#ff7f0e', 'fastify-sse-v2': '#2ca02c', 'better-sse': '#d62728' }

function escape (text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;')
}

/** A bar chart of the ratios to raw node:http2, one group per scenario; written by hand, no library. */
function svg ({ results, scenarios, targets }, about) {
  const groups = Object.keys(results)
  const barWidth = 24
  const groupWidth = targets.length * barWidth + 36
  const left = 60
  const top = 50
  const bottom = 270
  const height = bottom + 60
  const legend = 170
  const width = left + groups.length * groupWidth + legend
  const max = Math.max(1.5, ...groups.flatMap((name) => targets.map((target) => results[name][target]?.ratio ?? 0)))
  const y = (ratio) => bottom - (ratio / max) * (bottom - top)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    '<text x="10" y="20" font-size="13" font-weight="bold">SSE servers as a ratio of a hand-written node:http2 server (raw = 1.0x), same run</text>',
    `<text x="10" y="36" fill="#555">${escape(`${about.cpu}, Node.js ${about.node}, ${about.date}; medians; pull, fanout, churn: higher is better; idle, heartbeat: lower is better`)}</text>`
  ]
  for (let tick = 0; tick <= max; tick += max > 4 ? 1 : 0.5) {
    parts.push(`<line x1="${left - 5}" y1="${y(tick)}" x2="${width - legend}" y2="${y(tick)}" stroke="${tick === 1 ? '#444' : '#e5e5e5'}"${tick === 1 ? ' stroke-dasharray="4"' : ''}/>`)
    parts.push(`<text x="${left - 8}" y="${y(tick) + 4}" text-anchor="end">${tick.toFixed(1)}x</text>`)
  }
  groups.forEach((name, g) => {
    const x0 = left + 10 + g * groupWidth
    targets.forEach((target, t) => {
      const cell = results[name][target]
      const x = x0 + t * barWidth
      if (cell?.ratio === undefined) {
        parts.push(`<text x="${x + 4}" y="${bottom - 4}" font-size="9" fill="#999">${cell === undefined ? '—' : '×'}</text>`)
        return
      }
      parts.push(`<rect x="${x}" y="${y(cell.ratio)}" width="${barWidth - 4}" height="${bottom - y(cell.ratio)}" fill="${COLORS[target] ?? '#555'}"><title>${escape(target)}: ${cell.ratio.toFixed(2)}x</title></rect>`)
      parts.push(`<text x="${x + (barWidth - 4) / 2}" y="${y(cell.ratio) - 3}" font-size="9" text-anchor="middle">${cell.ratio.toFixed(2)}</text>`)
    })
    parts.push(`<text x="${x0}" y="${bottom + 16}" font-weight="bold">${escape(name)}</text>`)
    parts.push(`<text x="${x0}" y="${bottom + 30}" fill="#666">${scenarios[name].higherIsBetter ? 'higher is better' : 'lower is better'}</text>`)
  })
  targets.forEach((target, t) => {
    const yy = top + t * 18
    parts.push(`<rect x="${width - legend + 15}" y="${yy - 10}" width="12" height="12" fill="${COLORS[target] ?? '#555'}"/><text x="${width - legend + 33}" y="${yy}">${escape(target)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

/** What limits the measurement: the client's parser alone, and how busy the client was. */
function headroom ({ results, parser }) {
  const lines = []
  const best = Math.max(...Object.values(results.pull ?? {}).map((cell) => cell.median ?? 0))
  const rawPull = results.pull?.raw
  if (parser !== undefined) {
    lines.push(`- The client's event parser alone (no network, the raw server's bytes in 16 KiB chunks) counts ${format(parser)} events/s` +
      (best > 0 ? `, ${(parser / best).toFixed(1)}x the best pull figure.` : '.'))
  }
  if (rawPull?.clientCpu !== undefined) {
    lines.push(`- During the raw pull runs the client process used ${Math.round(rawPull.clientCpu * 100)}% of a core (median), ` +
      'HTTP/2 framing and flow control included; client and server share the machine\'s 2 cores.')
  }
  const fan = results.fanout?.['fastify-sse-h2']
  if (fan?.clientCpu !== undefined) {
    lines.push(`- During the fastify-sse-h2 fan-out runs the client used ${Math.round(fan.clientCpu * 100)}% of a core (median).`)
  }
  const heartbeat = results.heartbeat
  if (heartbeat !== undefined) {
    const rates = Object.entries(heartbeat).filter(([, cell]) => cell.heartbeatsPerStreamPerSecond !== undefined)
      .map(([target, cell]) => `${target} ${cell.heartbeatsPerStreamPerSecond.toFixed(2)}`)
    if (rates.length > 0) lines.push(`- Heartbeats the client received per stream per second (should be about 1): ${rates.join(', ')}.`)
  }
  return lines
}

function writeResults (run) {
  const rows = table(run)
  const about = machine()
  const notes = headroom(run)
  console.log(`\n${terminal(rows)}\n\n${notes.join('\n')}\n`)
  const out = run.out ?? RESULTS
  mkdirSync(out, { recursive: true })
  const header = [
    `Machine: ${about.cpu}, ${about.memory}, Node.js ${about.node}, ${about.date}.`,
    `Versions: ${Object.entries(about.versions).map(([name, version]) => `${name} ${version}`).join(', ')}.`,
    `Each figure is the median of ${run.runs} run${run.runs === 1 ? '' : 's'}${run.quick ? ' (quick: smaller sizes)' : ''}, ` +
      `targets interleaved round by round; in brackets, its ratio to raw node:http2 in the same run. The whole run took ${run.minutes.toFixed(1)} minutes.`,
    '',
    ...Object.entries(run.scenarios).filter(([name]) => run.results[name]).map(([name, scenario]) => `- **${name}**: ${scenario.what}`)
  ].join('\n')
  const md = `${header}\n\n${markdown(rows)}\n\nWhat limits the measurement:\n\n${notes.join('\n')}\n\n![ratios to raw node:http2](latest.svg)\n`
  writeFileSync(join(out, 'latest.md'), md)
  writeFileSync(join(out, 'latest.svg'), svg(run, about))
  writeFileSync(join(out, 'latest.json'), JSON.stringify({ machine: about, ...run }, null, 2) + '\n')
  console.log(`written: ${join(out, 'latest.md')}, latest.svg, latest.json`)
}

module.exports = { writeResults }
