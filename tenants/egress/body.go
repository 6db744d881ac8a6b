package egress

import "io"

// limitedBody passes through at most limit bytes of a response body and
// fails with ErrResponseTooLarge if the body holds more. A body of exactly
// limit bytes reads normally.
type limitedBody struct {
	rc        io.ReadCloser
	remaining int64
	limit     int64
	err       error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.remaining <= 0 {
		// The cap is reached; a single extra byte decides between a clean
		// end of body and an oversized one.
		var probe [1]byte
		n, err := b.rc.Read(probe[:])
		if n > 0 {
			b.err = tooLarge(b.limit)
			return 0, b.err
		}
		return 0, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.rc.Read(p)
	b.remaining -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
