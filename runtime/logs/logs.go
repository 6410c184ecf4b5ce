// Package logs writes container output in the kubelet's CRI log format:
//
//	2016-10-06T00:17:09.669794202Z stdout F a complete line
//	2016-10-06T00:17:09.669794203Z stderr P the first part of a long line
//
// one line per record, "F" for a full line and "P" for a part of a line that
// continues in the next record.
package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// MaxLineSize is the longest record written; longer lines are split into
// partial records.
const MaxLineSize = 16 * 1024

// Stream names as they appear in the log.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// File is a container's log file, shared by its stdout and stderr copiers.
// An empty path discards output, and so does a nil File: a process whose log
// is missing by some mistake must not take its copier down with it.
type File struct {
	path string

	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// Open opens (creating, appending) the log file at path.
func Open(path string) (*File, error) {
	l := &File{path: path}
	if path == "" {
		return l, nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func openFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write writes one record.
func (l *File) Write(stream string, partial bool, ts time.Time, line []byte) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	tag := byte('F')
	if partial {
		tag = 'P'
	}
	b := l.buf[:0]
	b = ts.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ', tag, ' ')
	b = append(b, line...)
	b = append(b, '\n')
	l.buf = b
	_, err := l.f.Write(b)
	return err
}

// Reopen closes the file and opens the path again, after the kubelet has
// rotated it away.
func (l *File) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; later writes are dropped.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Copy reads r until EOF and writes it to l as records of stream. Each chunk
// read is also passed to tee (when not nil) as it arrives, whole lines or
// not, for attached clients: a prompt without a newline must reach them.
// It returns the first read error other than EOF.
func Copy(l *File, stream string, r io.Reader, tee io.Writer) error {
	if tee != nil {
		r = io.TeeReader(r, tee)
	}
	br := bufio.NewReaderSize(r, MaxLineSize)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			ts := time.Now()
			full := line[len(line)-1] == '\n'
			if full {
				line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
			}
			// A write error (full disk) must not stall the container on a
			// full pipe: keep draining, the record is lost.
			_ = l.Write(stream, !full, ts, line)
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}
