package exchange

// SpaceCheck is asked before the store writes: need is about how many bytes
// the write will add. It returns an error (of kind nii.ErrUnavailable, by
// the node's convention) to refuse the write. badger writes its value log
// through memory-mapped files, so a write that runs out of disk is not an
// error but a SIGBUS: the check must refuse it while there is room.
type SpaceCheck func(need int64) error

// SetSpaceCheck installs f, asked before every chunk transaction of an
// ingest (about 16 MiB) and every batch a pull stores. Call it before the
// store is used.
func (s *Store) SetSpaceCheck(f SpaceCheck) { s.space = f }

func (s *Store) checkSpace(need int64) error {
	if s.space == nil {
		return nil
	}
	return s.space(need)
}
