package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
)

// Lineage verification: a merged version's manifest cites, by manifest
// hash, the standard, every source version and every mapping it was built
// from. CheckLineage fetches each cited manifest — from this node's store
// if it holds that version, otherwise from the version's providers — and
// checks that it verifies (signature), that its signer is the node the
// catalog takes for the dataset's publisher, and that it hashes to the
// cite. A source whose publisher's manifest is not the one cited (the cite
// was forged, or the "source" was another file) is reported as a
// mismatch.

// ErrNotMerged is returned when a lineage is asked of a version that has
// none. It is of kind nii.ErrInvalid.
var ErrNotMerged = nii.Errorf(nii.ErrInvalid, "not a merged dataset")

// CheckLineage checks the lineage of merged version ref (0: the newest).
func (n *Node) CheckLineage(ctx context.Context, ref nii.Ref) (*api.LineageReport, error) {
	m, merged, err := n.mergedManifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	if m.Lineage == nil {
		return nil, fmt.Errorf("%w: %s is a %s and has no lineage (only 'nii merge --publish' makes one)", ErrNotMerged, m.Ref(), kindWord(m.Meta.Kind))
	}
	l := m.Lineage
	rep := &api.LineageReport{Merged: merged, Standard: n.checkCite(ctx, l.Standard)}
	for _, in := range l.Inputs {
		li := api.LineageInput{Source: n.checkCite(ctx, in.Source), MappingHash: in.MappingHash, Partition: in.Partition,
			Accepted: in.Accepted, Rejected: in.Rejected}
		if !in.Mapping.IsZero() {
			c := n.checkCite(ctx, in.Mapping)
			li.Mapping = &c
		}
		rep.Inputs = append(rep.Inputs, li)
	}
	for _, ms := range l.Missing {
		rep.Missing = append(rep.Missing, api.MissingSource{Dataset: ms.Source.Dataset.String(), Version: ms.Source.Version, Reason: ms.Reason})
	}
	count := func(c *api.CiteCheck) {
		if c != nil && c.Status != api.LineageOK {
			rep.Problems++
		}
	}
	count(&rep.Merged)
	count(&rep.Standard)
	for i := range rep.Inputs {
		count(&rep.Inputs[i].Source)
		count(rep.Inputs[i].Mapping)
	}
	rep.OK = rep.Problems == 0
	return rep, nil
}

// mergedManifest returns a version's manifest, from the store or, if this
// node does not hold the version, from its providers (the manifest alone:
// no chunks are fetched), and the check of it.
func (n *Node) mergedManifest(ctx context.Context, ref nii.Ref) (*nii.Manifest, api.CiteCheck, error) {
	if rec, err := n.store.Version(ref); err == nil {
		m, err := n.store.OpenManifest(rec)
		if err != nil {
			return nil, api.CiteCheck{}, err
		}
		c := api.CiteCheck{Ref: rec.Ref.String(), Manifest: rec.Manifest, Status: api.LineageOK, Signer: m.Publisher, Held: true}
		n.checkSigner(&c, m)
		return m, c, nil
	} else if !errors.Is(err, nii.ErrNotFound) {
		return nil, api.CiteCheck{}, err
	}
	src, err := n.sources(ref)
	if err != nil {
		return nil, api.CiteCheck{}, err
	}
	if src.Publisher.Advert.Withdrawn {
		return nil, api.CiteCheck{}, fmt.Errorf("dataset %s: %w: withdrawn by its publisher", ref.Dataset, nii.ErrNotFound)
	}
	ref.Version = src.Version
	var last error
	for _, p := range src.Remote() {
		m, mh, sm, err := n.host.FetchManifest(ctx, p, exchange.ManifestRequest{Dataset: ref.Dataset, Version: ref.Version, Credential: n.Credential()})
		if err != nil {
			last = err
			continue
		}
		if _, _, err := exchange.CheckManifest(sm, ref, src.Publisher.Advert.Origin, src.Manifest); err != nil {
			last = err
			continue
		}
		c := api.CiteCheck{Ref: m.Ref().String(), Manifest: mh, Status: api.LineageOK, Signer: m.Publisher}
		n.checkSigner(&c, m)
		return m, c, nil
	}
	if last == nil {
		last = fmt.Errorf("%w: no provider of %s", nii.ErrUnavailable, ref)
	}
	return nil, api.CiteCheck{}, fmt.Errorf("fetch the manifest of %s: %w", ref, last)
}

// checkSigner marks c wrong_signer if m's signer is not the node the
// catalog takes for the dataset's publisher, and fills in the verified
// org.
func (n *Node) checkSigner(c *api.CiteCheck, m *nii.Manifest) {
	pub, err := n.publisher(m.Dataset)
	if err != nil {
		return // unlisted now: the signature is all there is to check
	}
	if pub.Advert.Origin != m.Publisher {
		c.Status = api.LineageWrongSigner
		c.Detail = fmt.Sprintf("signed by node %s; the catalog takes node %s for the publisher of %s", m.Publisher.Short(), pub.Advert.Origin.Short(), m.Dataset)
		return
	}
	if pub.Verified {
		c.Org = m.Dataset.Org
	}
}

// checkCite fetches the manifest a lineage cites and checks it.
func (n *Node) checkCite(ctx context.Context, cite nii.VersionCite) api.CiteCheck {
	ref := cite.Ref()
	c := api.CiteCheck{Ref: ref.String(), Manifest: cite.Manifest}
	if rec, err := n.store.Version(ref); err == nil {
		c.Held = true
		m, err := n.store.OpenManifest(rec)
		if err != nil {
			c.Status, c.Detail = api.LineageBadSig, err.Error()
			return c
		}
		c.Signer = m.Publisher
		if rec.Manifest != cite.Manifest {
			c.Status = api.LineageMismatch
			c.Detail = fmt.Sprintf("this node holds %s with manifest %s, signed by node %s; the lineage cites %s", ref, rec.Manifest, m.Publisher.Short(), cite.Manifest)
			return c
		}
		c.Status = api.LineageOK
		n.checkSigner(&c, m)
		return c
	}
	src, err := n.sources(ref)
	if err != nil {
		c.Status, c.Detail = api.LineageUnlisted, err.Error()
		if !errors.Is(err, nii.ErrNotFound) {
			c.Status = api.LineageUnreachable
		}
		return c
	}
	pub := src.Publisher.Advert.Origin
	var refused, unreachable error
	for _, p := range src.Remote() {
		m, mh, _, err := n.host.FetchManifest(ctx, p, exchange.ManifestRequest{Dataset: ref.Dataset, Version: ref.Version, Credential: n.Credential()})
		switch {
		case errors.Is(err, nii.ErrRefused):
			refused = err
			continue
		case errors.Is(err, nii.ErrBadSignature):
			c.Status, c.Detail = api.LineageBadSig, err.Error()
			return c
		case err != nil:
			unreachable = err
			continue
		}
		c.Signer = m.Publisher
		if m.Publisher != pub {
			// A replica serves what its publisher signed; anything else is
			// not the publisher's version.
			if p != pub {
				unreachable = fmt.Errorf("node %s served a manifest signed by %s, not by the publisher", p.Short(), m.Publisher.Short())
				continue
			}
		}
		if mh != cite.Manifest {
			c.Status = api.LineageMismatch
			c.Detail = fmt.Sprintf("the publisher's manifest of %s is %s (signed by node %s); the lineage cites %s: the merged table was not built from what the publisher published", ref, mh, m.Publisher.Short(), cite.Manifest)
			return c
		}
		c.Status = api.LineageOK
		n.checkSigner(&c, m)
		return c
	}
	switch {
	case refused != nil:
		c.Status, c.Detail = api.LineageRefused, refused.Error()+" (a restricted source's manifest needs a grant: pull it with --grant first, then check again)"
	case unreachable != nil:
		c.Status, c.Detail = api.LineageUnreachable, unreachable.Error()
	default:
		c.Status, c.Detail = api.LineageUnreachable, "no provider of "+ref.String()+" is known"
	}
	return c
}
