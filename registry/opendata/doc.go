// Package opendata translates the federated catalog into the formats
// existing open-data tools speak:
//
//   - the CKAN action API (CKAN 2.9/2.10 shapes): packages, resources,
//     organizations, and package_search's parameters (q, fq, sort, rows,
//     start, facet.field), mapped onto a search.Query so that the
//     catalog's one search index answers them;
//   - DCAT v3 (DCAT-AP compatible) as RDF, serialised as JSON-LD and
//     Turtle, with Hydra paging for large catalogs;
//   - Frictionless Data Packages with Table Schemas built from the columns
//     nii inferred when the file was published.
//
// It translates catalog entries (signed adverts with what the node knows
// of them) into documents, and serves them: Handler is the http.Handler of
// the CKAN, DCAT and Data Package routes (package lookup, organization
// aggregation, sorting and paging, content negotiation) over a small
// Catalog interface, which package node adapts its catalog, member table
// and store to and mounts (node/opendata.go, docs/opendata.md). It links
// no peer-to-peer networking.
//
// The one parser of untrusted input here is the CKAN/Solr filter syntax
// (ParseFilter, used for fq and the field clauses of q). It accepts a small,
// documented subset and refuses the rest with an error that says what is
// supported, never a partial guess.
package opendata
