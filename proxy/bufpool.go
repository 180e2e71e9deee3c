package proxy

import (
	"bufio"
	"io"
	"sync"
)

// bufPools recycles the bufio readers and writers of connections, so that
// a new connection costs no buffer allocation in steady state and an idle
// process holds no buffers.
type bufPools struct {
	readerSize, writerSize int
	readers, writers       sync.Pool
	// fields: the field arrays idle TLS connections lend (awaitTLS).
	fields sync.Pool
}

func newBufPools(readerSize, writerSize int) *bufPools {
	return &bufPools{readerSize: readerSize, writerSize: writerSize}
}

func (b *bufPools) getReader(r io.Reader) *bufio.Reader {
	if v, ok := b.readers.Get().(*bufio.Reader); ok {
		v.Reset(r)
		return v
	}
	return bufio.NewReaderSize(r, b.readerSize)
}

func (b *bufPools) getWriter(w io.Writer) *bufio.Writer {
	if v, ok := b.writers.Get().(*bufio.Writer); ok {
		v.Reset(w)
		return v
	}
	return bufio.NewWriterSize(w, b.writerSize)
}

func (b *bufPools) putReader(r *bufio.Reader) {
	r.Reset(nil)
	b.readers.Put(r)
}

func (b *bufPools) putWriter(w *bufio.Writer) {
	w.Reset(nil)
	b.writers.Put(w)
}
