package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the reporter's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReportProgress: a line per interval, "starting" before the first
// result, then the counts and the rate; nothing after stop returns.
func TestReportProgress(t *testing.T) {
	var mu sync.Mutex
	var scored, failed int64
	var elapsed time.Duration
	progress := func() (int64, int64, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		return scored, failed, elapsed
	}
	var out lockedBuffer
	stop := reportProgress(&out, 5*time.Millisecond, progress)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "starting") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	scored, failed, elapsed = 120, 3, 4*time.Second
	mu.Unlock()
	want := "multiad score: 120 images scored so far (30.0/s), 3 failed\n"
	for !strings.Contains(out.String(), want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	got := out.String()
	if !strings.HasPrefix(got, "multiad score: starting") || !strings.Contains(got, want) {
		t.Fatalf("progress lines:\n%s\nwant a starting line, then %q", got, want)
	}
	time.Sleep(20 * time.Millisecond)
	if after := out.String(); after != got {
		t.Errorf("lines after stop: %q", after[len(got):])
	}
}
