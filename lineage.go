package nii

import "fmt"

// Lineage is what a merged dataset's version was built from: the standard,
// every input version and the mapping applied to it, and the sources that
// could not be used. It travels in the merged version's signed manifest
// (never in the advert, which must stay small), so anyone who pulls the
// merged table can fetch each cited manifest, check its publisher's
// signature and hash, and re-derive any row.
type Lineage struct {
	// Standard is the standard's version and its manifest hash.
	Standard VersionCite `json:"standard" cbor:"1,keyasint"`
	// SchemaHash is the BLAKE3 hash of the standard's schema bytes.
	SchemaHash Hash           `json:"schema_hash" cbor:"2,keyasint"`
	Inputs     []LineageInput `json:"inputs" cbor:"3,keyasint,omitempty"`
	// Missing are sources that conform but were left out (a partial
	// merge), and why.
	Missing []LineageMissing `json:"missing,omitempty" cbor:"4,keyasint,omitempty"`
}

// VersionCite names one version of a dataset by its manifest hash: what a
// lineage cites, and what a verifier checks a fetched manifest against.
type VersionCite struct {
	Dataset  DatasetID `json:"dataset" cbor:"1,keyasint"`
	Version  uint64    `json:"version" cbor:"2,keyasint"`
	Manifest Hash      `json:"manifest" cbor:"3,keyasint"`
}

// Ref returns the cited dataset version.
func (c VersionCite) Ref() Ref { return Ref{Dataset: c.Dataset, Version: c.Version} }

// IsZero reports whether nothing is cited.
func (c VersionCite) IsZero() bool { return c == VersionCite{} }

// Check validates a cite: a valid dataset, a version from 1, a manifest.
func (c VersionCite) Check() error {
	if err := c.Dataset.Validate(); err != nil {
		return err
	}
	if c.Version == 0 || c.Manifest.IsZero() {
		return fmt.Errorf("%w cite of %s: no version or manifest", ErrInvalid, c.Dataset)
	}
	return nil
}

// LineageInput is one source of a merge.
type LineageInput struct {
	// Source is the input version and its manifest hash, which every
	// merged row from it cites in _source_manifest.
	Source VersionCite `json:"source" cbor:"1,keyasint"`
	// Mapping is the published mapping applied to it, cited by manifest
	// hash (what every row cites in _mapping). Zero when the source
	// conforms to the standard directly and was read with the identity
	// mapping the standard implies.
	Mapping VersionCite `json:"mapping,omitzero" cbor:"2,keyasint,omitempty"`
	// MappingHash is the hash of the mapping's canonical form (comments
	// and layout aside), which is what was applied.
	MappingHash Hash `json:"mapping_hash" cbor:"3,keyasint"`
	// Partition is the BLAKE3 hash of the source's rows in the merged CSV.
	Partition Hash  `json:"partition" cbor:"4,keyasint"`
	Accepted  int64 `json:"accepted" cbor:"5,keyasint"`
	Rejected  int64 `json:"rejected" cbor:"6,keyasint"`
}

// LineageMissing is a source a partial merge left out.
type LineageMissing struct {
	Source VersionCite `json:"source" cbor:"1,keyasint"`
	Reason string      `json:"reason" cbor:"2,keyasint"`
}

// MaxLineageInputs bounds a lineage's inputs and missing sources.
const MaxLineageInputs = 100_000

// Check validates a lineage's shape: every cite well formed, within bounds.
func (l *Lineage) Check() error {
	if err := l.Standard.Check(); err != nil {
		return fmt.Errorf("lineage standard: %w", err)
	}
	if len(l.Inputs)+len(l.Missing) > MaxLineageInputs {
		return fmt.Errorf("%w lineage: more than %d sources", ErrInvalid, MaxLineageInputs)
	}
	for i, in := range l.Inputs {
		if err := in.Source.Check(); err != nil {
			return fmt.Errorf("lineage input %d: %w", i+1, err)
		}
		if !in.Mapping.IsZero() {
			if err := in.Mapping.Check(); err != nil {
				return fmt.Errorf("lineage input %d mapping: %w", i+1, err)
			}
		}
		if in.Accepted < 0 || in.Rejected < 0 {
			return fmt.Errorf("%w lineage input %d: negative row counts", ErrInvalid, i+1)
		}
	}
	for i, m := range l.Missing {
		if err := m.Source.Dataset.Validate(); err != nil {
			return fmt.Errorf("lineage missing source %d: %w", i+1, err)
		}
		if len(m.Reason) > 4<<10 {
			return fmt.Errorf("%w lineage missing source %d: reason over 4 KiB", ErrInvalid, i+1)
		}
	}
	return nil
}
