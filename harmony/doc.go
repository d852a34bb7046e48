// Package harmony turns many publishers' differently laid-out tables into
// one table that conforms to a shared standard, with every row traceable to
// the source line it came from.
//
// A Standard is a Frictionless Table Schema (ParseStandard validates it). A
// Mapping is a declarative TOML file saying where each of the standard's
// fields comes from in one publisher's layout and how its text is coerced
// (ParseMapping, Bind). Suggest proposes a mapping from a file; Check applies
// one and reports rows accepted and rejected. Merge maps many sources,
// caching each one's partition so that a re-merge maps only what changed,
// and writes the merged table (CSV, NDJSON, Parquet), its rejects, its
// Lineage and its Fitness. Everything streams: a source is read one row at a
// time.
//
// The package knows nothing of nodes, stores or the network: a Source is
// opened through a function the caller gives. docs/harmonisation.md has the
// mapping grammar and the merge's semantics.
package harmony
