package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/workers"
)

// countingPool answers like fakePool and counts reloads from any goroutine.
type countingPool struct{ reloads atomic.Int64 }

func (p *countingPool) Reload(context.Context) workers.ReloadResult {
	p.reloads.Add(1)
	return workers.ReloadResult{OK: true, Generation: 2, Message: "reload done"}
}

func (p *countingPool) Status(context.Context) (workers.Status, error) {
	return workers.Status{State: "running", Generation: 2}, nil
}

// FuzzRequest sends any bytes to a real control socket, as a client may,
// then ends its side, and checks the answer: one line of JSON holding
// exactly one of reload, status or error; a reload exactly when the first
// line, within 256 bytes, is "reload"; a status when it is "status"; else an
// error that says why. The seed corpus is testdata/fuzz/FuzzRequest: what
// corral reload and status send, and what a confused client might.
func FuzzRequest(f *testing.F) {
	path := filepath.Join(f.TempDir(), "control.sock")
	s, err := Listen(path, func(string, ...any) {})
	if err != nil {
		f.Fatal(err)
	}
	pool := &countingPool{}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), pool) }()
	f.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	f.Fuzz(func(t *testing.T, req []byte) {
		before := pool.reloads.Load()
		answer := ask(t, path, req)
		if pool.reloads.Load()-before > 1 {
			t.Fatalf("request %q: more than one reload", req)
		}
		reloaded := pool.reloads.Load() == before+1
		if bytes.Count(answer, []byte("\n")) != 1 || !bytes.HasSuffix(answer, []byte("\n")) {
			t.Fatalf("request %q: answer %q is not one line", req, answer)
		}
		var r reply
		dec := json.NewDecoder(bytes.NewReader(answer))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("request %q: answer %q: %v", req, answer, err)
		}
		set := 0
		for _, ok := range []bool{r.Reload != nil, r.Status != nil, r.Error != ""} {
			if ok {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("request %q: answer %q sets %d fields, want 1", req, answer, set)
		}
		word, complete := firstLine(req)
		switch {
		case !complete:
			if !strings.HasPrefix(r.Error, "bad request") || reloaded {
				t.Fatalf("request %q without a newline in 256 bytes: answer %q, reloaded %v", req, answer, reloaded)
			}
		case word == "reload":
			if r.Reload == nil || !reloaded {
				t.Fatalf("request %q: answer %q, reloaded %v; want a reload", req, answer, reloaded)
			}
		case word == "status":
			if r.Status == nil || reloaded {
				t.Fatalf("request %q: answer %q, reloaded %v; want a status", req, answer, reloaded)
			}
		default:
			if !strings.HasPrefix(r.Error, "unknown request") || reloaded {
				t.Fatalf("request %q: answer %q, reloaded %v; want unknown request", req, answer, reloaded)
			}
		}
	})
}

// firstLine returns the request's first line, trimmed, and whether it ends
// with a newline within maxRequest bytes.
func firstLine(req []byte) (string, bool) {
	i := bytes.IndexByte(req, '\n')
	if i < 0 || i >= maxRequest {
		return "", false
	}
	return strings.TrimSpace(string(req[:i])), true
}

// ask writes req on a new connection, closes the writing side, and returns
// everything the server answers.
func ask(t *testing.T, path string, req []byte) []byte {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// The server stops reading after the first line; a long request's
	// write may then fail, and that is not the client's concern here.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := c.Write(req); err == nil {
			c.CloseWrite()
		}
	}()
	answer, err := io.ReadAll(c)
	<-wrote
	// Closing a unix stream socket with unread data resets the peer, after
	// what was sent: the answer is there, and checked by the caller.
	if errors.Is(err, syscall.ECONNRESET) && len(answer) > 0 {
		err = nil
	}
	if err != nil {
		t.Fatalf("request %q: read answer: %v (got %q)", req, err, answer)
	}
	return answer
}
