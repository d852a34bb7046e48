package api

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nii-uk/nii"
)

// PublishOptions is what a publish sends besides the file: its name and
// the officer's metadata. They travel as the query of
// POST /api/v1/datasets/{org}/{name}/versions, whose body is the file.
type PublishOptions struct {
	Filename string // the file's base name, for the media type and DCAT
	// Meta holds the officer's fields (title, description, licence,
	// keywords, themes, access, conforms-to, optionally media type). Fields
	// left empty are carried over from the previous version; other fields
	// are the node's to fill.
	Meta nii.Metadata
	// Size is the file's size, if known: the node refuses up front a file
	// that would take its disk below its free-space floor.
	Size int64
}

// Query encodes o as the publish request's query.
func (o PublishOptions) Query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("filename", o.Filename)
	set("title", o.Meta.Title)
	set("description", o.Meta.Description)
	set("licence", o.Meta.Licence)
	set("access", string(o.Meta.Access))
	set("conforms_to", o.Meta.ConformsTo)
	set("media_type", o.Meta.MediaType)
	set("kind", o.Meta.Kind)
	if o.Size > 0 {
		q.Set("size", strconv.FormatInt(o.Size, 10))
	}
	if len(o.Meta.Keywords) > 0 {
		q["keyword"] = o.Meta.Keywords
	}
	if len(o.Meta.Themes) > 0 {
		q["theme"] = o.Meta.Themes
	}
	return q
}

// ParsePublishQuery decodes a publish request's query. Errors wrap
// nii.ErrInvalid.
func ParsePublishQuery(q url.Values) (PublishOptions, error) {
	var access nii.Access
	if s := q.Get("access"); s != "" {
		a, err := nii.ParseAccess(s)
		if err != nil {
			return PublishOptions{}, err
		}
		access = a
	}
	o := PublishOptions{
		Filename: filepath.Base(q.Get("filename")),
		Meta: nii.Metadata{
			Title:       q.Get("title"),
			Description: q.Get("description"),
			Licence:     q.Get("licence"),
			Keywords:    q["keyword"],
			Themes:      q["theme"],
			Access:      access,
			ConformsTo:  q.Get("conforms_to"),
			MediaType:   q.Get("media_type"),
			Kind:        q.Get("kind"),
		},
	}
	if s := q.Get("size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return PublishOptions{}, fmt.Errorf("%w size %q: want the file's size in bytes", nii.ErrInvalid, s)
		}
		o.Size = n
	}
	if o.Filename == "." || o.Filename == string(os.PathSeparator) {
		o.Filename = ""
	}
	return o, nil
}
