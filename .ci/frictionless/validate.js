// validate.js: check Data Packages a nii node serves against the files they
// describe, with Frictionless's JavaScript implementation (npm datapackage
// and tableschema, pinned in package.json).
//
//   node validate.js DESCRIPTOR_URL...
//
// For each descriptor: datapackage's Package.load validates it against the
// Data Package profile; then every row of each tabular resource, fetched
// from its path, is cast by tableschema against the resource's schema. The
// npm libraries implement Frictionless v1; nii serves v2 descriptors (see
// docs/opendata.md), so this script reads the three v2 properties those
// libraries do not, as a v2 reader would, and hands the rest to them:
//
//   - encoding: the bytes are decoded here ("utf-8" keeps a byte-order
//     mark, so a BOM file wrongly declared utf-8 fails its header check;
//     "utf-8-sig" drops it; "windows-1252");
//   - dialect.headerRows [N]: rows before row N are not data (csv-parse's
//     "from"), row N is the header;
//   - dialect.skipInitialSpace: tableschema always drops leading white
//     space (csv-parse's ltrim), which is what skipInitialSpace true says;
//     nii declares it whenever a cell of the file starts with white space
//     (registry/table), so the two readings agree.
//
// Every row error counts, except rows whose cell count differs from the
// header's, which no descriptor can make valid: those must be exactly the
// ones the descriptor declares (nii:raggedRows). It prints one JSON line
// per resource and exits 1 if any check fails.
'use strict'
const { Readable } = require('stream')
const { Package } = require('datapackage')
const { Table, Schema } = require('tableschema')

async function fetchBytes(url) {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
  return Buffer.from(await res.arrayBuffer())
}

function decode(bytes, encoding) {
  switch ((encoding || 'utf-8').toLowerCase()) {
    case 'utf-8':
    case 'utf8':
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
    case 'utf-8-sig':
      if (!(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)) throw new Error('utf-8-sig declared, but the file has no byte-order mark')
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    case 'windows-1252':
      return new TextDecoder('windows-1252').decode(bytes)
  }
  throw new Error(`encoding ${encoding}: not one this script reads`)
}

async function checkResource(descriptor, resource) {
  const out = { package: descriptor.name, resource: resource.name, rows: 0, errors: [], ragged: 0 }
  const text = decode(await fetchBytes(resource.path), resource.encoding)
  const dialect = resource.dialect || {}
  const headerRow = (dialect.headerRows && dialect.headerRows[0]) || 1
  const schema = await Schema.load(resource.schema)
  if (!schema.valid) {
    out.errors.push(...schema.errors.map(e => 'schema: ' + e.message))
    return out
  }
  const options = { schema, headers: 1, from: headerRow }
  if (dialect.delimiter) options.delimiter = dialect.delimiter
  const table = await Table.load(() => Readable.from([text]), options)
  const rows = await table.read({ forceCast: true, extended: true })
  const labels = (table.headers || []).join('|')
  const names = resource.schema.fields.map(f => f.name).join('|')
  if (labels !== names) out.errors.push(`header ${JSON.stringify(table.headers)} is not the schema's field names ${JSON.stringify(resource.schema.fields.map(f => f.name))}`)
  for (const row of rows) {
    out.rows++
    if (!(row instanceof Error)) continue
    if (/values does not match the \d+ fields/.test(row.message)) { out.ragged++; continue }
    const detail = (row.errors && row.errors.length ? row.errors.map(e => e.message).join('; ') : row.message)
    out.errors.push(`row ${row.rowNumber}: ${detail}`)
  }
  const declared = resource['nii:raggedRows'] || 0
  if (out.ragged !== declared) out.errors.push(`${out.ragged} rows have another cell count than the header; the descriptor declares ${declared}`)
  return out
}

async function main(urls) {
  if (urls.length === 0) {
    console.error('usage: node validate.js DESCRIPTOR_URL...')
    process.exit(2)
  }
  let failed = false
  for (const url of urls) {
    let descriptor
    try {
      descriptor = JSON.parse((await fetchBytes(url)).toString('utf-8'))
      const pkg = await Package.load(descriptor)
      if (!pkg.valid) throw new Error('descriptor: ' + pkg.errors.map(e => e.message).join('; '))
      for (const resource of descriptor.resources) {
        if (resource.type !== 'table') continue
        const r = await checkResource(descriptor, resource)
        r.url = url
        r.errors = r.errors.slice(0, 20)
        console.log(JSON.stringify(r))
        if (r.errors.length) failed = true
      }
    } catch (e) {
      console.log(JSON.stringify({ url, errors: [String(e && e.message || e)] }))
      failed = true
    }
  }
  process.exit(failed ? 1 : 0)
}

main(process.argv.slice(2))
