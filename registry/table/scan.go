package table

import "bytes"

// scanState is where a scanner is within a record.
type scanState uint8

const (
	stField    scanState = iota // at the start of a field (or of a record)
	stUnquoted                  // inside an unquoted field
	stQuoted                    // inside a quoted field
	stQuote                     // just after a '"' inside a quoted field
)

// csvScanner counts CSV records without parsing them, quickly: on plain data it
// costs one bytes.IndexByte per line plus one per chunk. It follows
// encoding/csv with LazyQuotes exactly, so that its records are
// encoding/csv's records:
//
//   - records end at '\n' outside quoted fields; "\r\n" counts as '\n', and
//     a '\r' at the very end of the input is dropped;
//   - a '"' opens a quoted field only at the start of a field; elsewhere it
//     is data;
//   - inside a quoted field, `""` is a quote, `"` followed by the delimiter
//     or the end of a line ends the field, and any other `"` is data;
//   - lines with nothing on them are skipped.
//
// Only records with at least one non-empty field are counted (blank records
// such as ",,,," are not). State carries across calls to scan, so input may
// be split anywhere.
type csvScanner struct {
	delim    byte
	st       scanState
	nonEmpty bool  // the current record has a non-empty field
	cr       bool  // the last chunk ended in a '\r' whose meaning depends on the next byte
	rows     int64 // non-blank records ended so far
	crlf, lf int64 // record terminators seen: "\r\n" and bare "\n"
	off      int64 // bytes scanned before the current chunk
	boundary int64 // offset just past the last record terminator

	// With countFields set the scanner also tracks the largest field count
	// of any record (only used on the sample, to bound encoding/csv's memory).
	countFields bool
	delims      int // delimiters outside quotes in the current record
	maxFields   int
}

// endRecord ends the current record at a terminator; next is the offset just
// past it.
func (s *csvScanner) endRecord(crlf bool, next int64) {
	if s.nonEmpty {
		s.rows++
	}
	if crlf {
		s.crlf++
	} else {
		s.lf++
	}
	if s.countFields {
		s.maxFields = max(s.maxFields, s.delims+1)
		s.delims = 0
	}
	s.nonEmpty = false
	s.st = stField
	s.boundary = next
}

// crContent handles a '\r' that turned out not to precede '\n': it is data.
func (s *csvScanner) crContent() {
	s.nonEmpty = true
	switch s.st {
	case stField:
		s.st = stUnquoted
	case stQuote: // a bare quote, then the '\r'
		s.st = stQuoted
	}
}

// finish ends the input: the last record may lack a terminator.
func (s *csvScanner) finish() {
	s.cr = false // encoding/csv drops a '\r' at the end of the input
	if s.nonEmpty {
		s.rows++
	}
	if s.countFields {
		s.maxFields = max(s.maxFields, s.delims+1)
	}
	s.nonEmpty = false
	s.st = stField
}

// hasData reports whether b holds a byte other than the delimiter.
func hasData(b []byte, delim byte) bool {
	for _, c := range b {
		if c != delim {
			return true
		}
	}
	return false
}

// indexFrom returns the index of the first c in b at or after i, or len(b).
func indexFrom(b []byte, i int, c byte) int {
	k := bytes.IndexByte(b[i:], c)
	if k < 0 {
		return len(b)
	}
	return i + k
}

// scan feeds the next chunk of input.
func (s *csvScanner) scan(b []byte) {
	base := s.off
	s.off += int64(len(b))
	i := 0
	if s.cr && len(b) > 0 {
		s.cr = false
		switch {
		case b[0] != '\n':
			s.crContent()
		case s.st == stQuoted:
			s.nonEmpty = true // "\r\n" inside quotes is data; the '\n' is handled below
		default:
			s.endRecord(true, base+1)
			i = 1
		}
	}
	q := -1 // index of the first '"' at or after i (len(b) if none), when q >= i
	for i < len(b) {
		switch s.st {
		case stQuoted:
			if q < i {
				q = indexFrom(b, i, '"')
			}
			if q == len(b) {
				rest := b[i:]
				if rest[len(rest)-1] == '\r' {
					s.cr = true
					rest = rest[:len(rest)-1]
				}
				if len(rest) > 0 {
					s.nonEmpty = true
				}
				return
			}
			if q > i {
				s.nonEmpty = true
			}
			s.st = stQuote
			i = q + 1

		case stQuote:
			switch c := b[i]; c {
			case '"': // `""`: a quote
				s.nonEmpty = true
				s.st = stQuoted
				i++
			case s.delim: // end of field
				s.st = stField
				s.delims++
				i++
			case '\n':
				s.endRecord(false, base+int64(i)+1)
				i++
			case '\r':
				switch {
				case i+1 == len(b):
					s.cr = true
					i++
				case b[i+1] == '\n':
					s.endRecord(true, base+int64(i)+2)
					i += 2
				default: // a bare quote, then the '\r'
					s.nonEmpty = true
					s.st = stQuoted
					i++
				}
			default: // a bare quote; c is handled as quoted data
				s.nonEmpty = true
				s.st = stQuoted
			}

		default: // stField, stUnquoted: take the rest of the line
			end := indexFrom(b, i, '\n')
			if q < i {
				q = indexFrom(b, i, '"')
			}
			// A quote opens a quoted field only at the start of a field.
			for q < end && !(q == i && s.st == stField) && !(q > i && b[q-1] == s.delim) {
				q = indexFrom(b, q+1, '"')
			}
			if q < end {
				pre := b[i:q]
				if !s.nonEmpty && hasData(pre, s.delim) {
					s.nonEmpty = true
				}
				if s.countFields {
					s.delims += bytes.Count(pre, []byte{s.delim})
				}
				s.st = stQuoted
				i = q + 1
				continue
			}
			line := b[i:end]
			crlf := false
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
				if end < len(b) {
					crlf = true
				} else {
					s.cr = true
				}
			}
			if len(line) > 0 {
				if !s.nonEmpty && hasData(line, s.delim) {
					s.nonEmpty = true
				}
				if s.countFields {
					s.delims += bytes.Count(line, []byte{s.delim})
				}
				if line[len(line)-1] == s.delim {
					s.st = stField
				} else {
					s.st = stUnquoted
				}
			}
			if end == len(b) {
				return
			}
			s.endRecord(crlf, base+int64(end)+1)
			i = end + 1
		}
	}
}
