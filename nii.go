// Package nii holds the nouns every part of nii speaks: dataset and version
// identifiers, content hashes, node IDs, dataset metadata and manifests.
//
// It is the one place these types are defined (as upspin's upspin package is
// for upspin). It depends only on the standard library and small encoding
// libraries, so that every other package — auth included, which must not see
// libp2p or memberlist — can import it.
package nii

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// slugRE is the shape of an org or dataset name: lowercase letters, digits
// and hyphens, starting with a letter or digit.
var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// MaxSlugLen bounds org and dataset names so they fit in keys and URLs.
const MaxSlugLen = 64

// CheckSlug reports whether s is a valid org or dataset name, saying what is
// wrong if not. what names the thing for the message ("org", "dataset name").
func CheckSlug(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w %s: empty", ErrInvalid, what)
	case len(s) > MaxSlugLen:
		return fmt.Errorf("%w %s %q: longer than %d characters", ErrInvalid, what, s, MaxSlugLen)
	case !slugRE.MatchString(s):
		return fmt.Errorf("%w %s %q: use lowercase letters, digits and hyphens, starting with a letter or digit", ErrInvalid, what, s)
	}
	return nil
}

// DatasetID names a dataset: the publishing org and the dataset's name.
type DatasetID struct {
	Org  string `json:"org" cbor:"1,keyasint"`
	Name string `json:"name" cbor:"2,keyasint"`
}

// String returns "org/name".
func (d DatasetID) String() string { return d.Org + "/" + d.Name }

// Validate checks both halves of the ID.
func (d DatasetID) Validate() error {
	if err := CheckSlug("org", d.Org); err != nil {
		return err
	}
	return CheckSlug("dataset name", d.Name)
}

// ParseDatasetID parses "org/name".
func ParseDatasetID(s string) (DatasetID, error) {
	org, name, ok := strings.Cut(s, "/")
	if !ok {
		return DatasetID{}, fmt.Errorf("%w dataset %q: want ORG/NAME, e.g. greenwich/spend", ErrInvalid, s)
	}
	d := DatasetID{Org: org, Name: name}
	if err := d.Validate(); err != nil {
		return DatasetID{}, err
	}
	return d, nil
}

// Ref names one version of a dataset, or its latest version when Version is 0.
type Ref struct {
	Dataset DatasetID
	Version uint64 // 0 means "the latest"
}

// String returns "org/name@N", or "org/name" for the latest.
func (r Ref) String() string {
	if r.Version == 0 {
		return r.Dataset.String()
	}
	return r.Dataset.String() + "@" + strconv.FormatUint(r.Version, 10)
}

// ParseRef parses "org/name" or "org/name@N" (N ≥ 1).
func ParseRef(s string) (Ref, error) {
	ds, ver, hasVer := strings.Cut(s, "@")
	d, err := ParseDatasetID(ds)
	if err != nil {
		return Ref{}, err
	}
	r := Ref{Dataset: d}
	if hasVer {
		n, err := strconv.ParseUint(ver, 10, 64)
		if err != nil || n == 0 {
			return Ref{}, fmt.Errorf("%w version %q in %q: want a whole number from 1, e.g. %s@1", ErrInvalid, ver, s, ds)
		}
		r.Version = n
	}
	return r, nil
}
