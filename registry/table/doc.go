// Package table profiles tabular files and knows media types.
//
// A [Profiler] is an io.Writer that a file is streamed through (as package
// node tees a publish into it); [Profile] reads a whole stream. The result
// is a [nii.Table]: the detected dialect — encoding (utf-8 or windows-1252),
// byte-order mark, delimiter, line terminator, and the header's record
// number below any preamble — then the exact data row count and the
// columns, each with a Frictionless Table Schema type inferred from a
// sample. Memory stays bounded however large the file: only the first
// records are parsed, the rest are counted.
//
// [DetectMediaType], [FormatName] and [IsTabular] are the one place nii
// knows media-type names: search facets, the CLI, and the open-data views
// all show a format as FormatName gives it.
//
// The package imports only the root package and the standard library.
package table
