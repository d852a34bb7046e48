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
// It is pure translation: it takes catalog entries (signed adverts with
// what the node knows of them) and the base URL the request came in on,
// and returns documents. It imports no networking package; node serves
// the results over HTTP (node/api_opendata.go, docs/opendata.md).
//
// The one parser of untrusted input here is the CKAN/Solr filter syntax
// (ParseFilter, used for fq and the field clauses of q). It accepts a small,
// documented subset and refuses the rest with an error that says what is
// supported, never a partial guess.
package opendata
