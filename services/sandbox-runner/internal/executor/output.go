package executor

import (
	"io"
	"sync"
)

// cappedBuffer keeps the first max bytes of a stream and keeps reading (and
// discarding) past the cap, so a writer never blocks on a full pipe.
type cappedBuffer struct {
	max      int64
	onExceed func()

	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func newCappedBuffer(max int64, onExceed func()) *cappedBuffer {
	return &cappedBuffer{max: max, onExceed: onExceed}
}

func (c *cappedBuffer) drain(r io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			c.add(chunk[:n])
		}
		if err != nil {
			return
		}
	}
}

func (c *cappedBuffer) add(b []byte) {
	c.mu.Lock()
	room := c.max - int64(len(c.buf))
	exceeded := false
	if int64(len(b)) > room {
		b = b[:max(room, 0)]
		exceeded = !c.truncated
		c.truncated = true
	}
	c.buf = append(c.buf, b...)
	c.mu.Unlock()
	if exceeded {
		c.onExceed()
	}
}

func (c *cappedBuffer) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}
