package baseline

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// FileLog appends records to a file and makes each durable with
// fdatasync before Append returns. With one writer every append is its
// own write+fdatasync; concurrent appends are grouped: one goroutine
// writes and syncs whatever has queued since its last sync (the least a
// group commit can do).
type FileLog struct {
	f *os.File

	mu  sync.Mutex // guards cur
	cur *fileBatch

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

type fileBatch struct {
	buf  []byte
	n    int
	done chan struct{}
	err  error
}

// OpenFileLog creates path (truncating it).
func OpenFileLog(path string) (*FileLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("baseline: file log: %w", err)
	}
	l := &FileLog{f: f, cur: &fileBatch{done: make(chan struct{})}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	l.wg.Go(l.syncLoop)
	return l, nil
}

// AppendSync appends b and fdatasyncs it on the caller's goroutine; for a
// single writer.
func (l *FileLog) AppendSync(b []byte) error {
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("baseline: file log write: %w", err)
	}
	if err := syscall.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("baseline: fdatasync: %w", err)
	}
	return nil
}

// Append queues b for the next group write+fdatasync and waits for it.
func (l *FileLog) Append(b []byte) error {
	l.mu.Lock()
	bt := l.cur
	bt.buf = append(bt.buf, b...)
	bt.n++
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-bt.done
	return bt.err
}

func (l *FileLog) syncLoop() {
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		}
		l.mu.Lock()
		bt := l.cur
		l.cur = &fileBatch{done: make(chan struct{})}
		l.mu.Unlock()
		if bt.n == 0 {
			close(bt.done)
			continue
		}
		bt.err = l.AppendSync(bt.buf)
		close(bt.done)
	}
}

// Close stops the syncer and closes the file. No Append may be running.
func (l *FileLog) Close() error {
	close(l.stop)
	l.wg.Wait()
	return l.f.Close()
}
