package nii

import (
	"fmt"
	"path"
	"strings"
)

// CheckPattern validates a dataset pattern: "org/name" where either part
// may use path.Match wildcards (* ? [...]); * never crosses the "/".
func CheckPattern(p string) error {
	if p == "*" || p == "**" {
		return fmt.Errorf("%w dataset pattern %q: a pattern is ORG/NAME and * never crosses the \"/\", so %q would match no dataset; write */* for every dataset of every org, or greenwich/* for every dataset of one", ErrInvalid, p, p)
	}
	org, name, ok := strings.Cut(p, "/")
	if !ok || org == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%w dataset pattern %q: want ORG/NAME, wildcards allowed (greenwich/spend-*)", ErrInvalid, p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%w dataset pattern %q: %v", ErrInvalid, p, err)
	}
	if len(p) > 256 {
		return fmt.Errorf("%w dataset pattern: too long", ErrInvalid)
	}
	return nil
}

// MatchDataset reports whether any pattern matches d.
func MatchDataset(patterns []string, d DatasetID) bool {
	s := d.String()
	for _, p := range patterns {
		if ok, err := path.Match(p, s); err == nil && ok {
			return true
		}
	}
	return false
}
