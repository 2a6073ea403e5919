package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 30 * time.Second

// server serves h on a free loopback port and returns its address.
func server(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// wait waits until cond holds, failing t after waitTimeout.
func wait(t *testing.T, l *Load, what string, cond func(Counts) bool) Counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	c, err := l.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v; counts %+v", what, err, c)
	}
	return c
}

func TestCountsAnswersByPID(t *testing.T) {
	addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "hello from worker 0 (pid 42, generation 1)\n")
	})
	l := Start(addr, 2, 2)
	wait(t, l, "200 answers", func(c Counts) bool { return c.OK >= 200 })
	r := l.Report()
	if r.Failed != 0 || r.OK < 200 || r.ByPID[42] != r.OK || len(r.ByPID) != 1 {
		t.Errorf("ok %d, failed %d, by pid %v; want >= 200 ok, all from pid 42: %q", r.OK, r.Failed, r.ByPID, r.Errs)
	}
	if int64(len(r.Latencies)) != r.OK || !slices.IsSorted(r.Latencies) {
		t.Errorf("%d latencies (sorted: %t) for %d answers", len(r.Latencies), slices.IsSorted(r.Latencies), r.OK)
	}
	if q := r.Quantile(0.5); q <= 0 || q > r.Quantile(0.99) {
		t.Errorf("p50 %v, p99 %v", q, r.Quantile(0.99))
	}
	if n := int(r.Elapsed/(100*time.Millisecond)) + 1; len(r.BucketOK) != n || len(r.BucketFailed) != n {
		t.Errorf("%d and %d buckets over %v, want %d", len(r.BucketOK), len(r.BucketFailed), r.Elapsed, n)
	}
	if sum(r.BucketOK) != r.OK || sum(r.BucketFailed) != 0 {
		t.Errorf("buckets hold %d ok, %d failed; want %d, 0", sum(r.BucketOK), sum(r.BucketFailed), r.OK)
	}
	if ok, failed, _ := l.Stop(); ok != r.OK || failed != 0 {
		t.Errorf("Stop after Report: %d, %d; want %d, 0", ok, failed, r.OK)
	}
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestConnections: keep-alive clients open one connection each, the others
// one per request (and perhaps one more for a request cut short by Stop).
func TestConnections(t *testing.T) {
	addr := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	tests := []struct {
		name               string
		newConn, keepAlive int
		want               func(c Counts) bool
	}{
		{"keep-alive", 0, 3, func(c Counts) bool { return c.Conns == 3 }},
		{"new connection", 3, 0, func(c Counts) bool { return c.OK <= c.Conns && c.Conns <= c.OK+3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Start(addr, tt.newConn, tt.keepAlive)
			wait(t, l, "100 answers", func(c Counts) bool { return c.OK >= 100 })
			if r := l.Report(); !tt.want(r.Counts) || r.Failed != 0 {
				t.Errorf("%d connections for %d answers, %d failed", r.Conns, r.OK, r.Failed)
			}
		})
	}
}

func TestCountsFailures(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
		kind string
	}{
		{"status", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }, "status 503"},
		{"dropped", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		}, "closed (EOF)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Start(server(t, tt.h), 1, 1)
			wait(t, l, "20 failures", func(c Counts) bool { return c.Failed >= 20 })
			r := l.Report()
			if r.OK != 0 || r.Kinds[tt.kind] != r.Failed || len(r.Errs) != maxErrs || sum(r.BucketFailed) != r.Failed {
				t.Errorf("ok %d, failed %d, kinds %v, %d errors, %d in buckets; want all %q",
					r.OK, r.Failed, r.Kinds, len(r.Errs), sum(r.BucketFailed), tt.kind)
			}
			t.Logf("first failure: %s", r.Errs[0])
		})
	}
}

// TestMark: after Mark, SinceMark counts only requests sent from then on,
// which all meet the second "worker".
func TestMark(t *testing.T) {
	var pid atomic.Int64
	pid.Store(1)
	addr := server(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, pid.Load()) })
	l := Start(addr, 2, 2)
	defer l.Stop()
	if c := wait(t, l, "50 answers from pid 1", func(c Counts) bool { return c.ByPID[1] >= 50 }); c.SinceMark.OK != 0 {
		t.Errorf("before Mark, SinceMark = %+v", c.SinceMark)
	}
	pid.Store(2)
	l.Mark()
	c := wait(t, l, "50 answers after the mark", func(c Counts) bool { return c.SinceMark.OK >= 50 })
	if len(c.SinceMark.ByPID) != 1 || c.SinceMark.ByPID[2] != c.SinceMark.OK || c.OK < c.ByPID[1]+c.SinceMark.OK {
		t.Errorf("since the mark %+v, in all %+v; want all since from pid 2", c.SinceMark, c.Tally)
	}
}

func TestWaitEnds(t *testing.T) {
	addr := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	l := Start(addr, 1, 0)
	never := func(Counts) bool { return false }
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline: %v, want DeadlineExceeded", err)
	}
	stopped := make(chan error)
	go func() { _, err := l.Wait(t.Context(), never); stopped <- err }()
	l.Stop()
	if err := <-stopped; err != ErrStopped {
		t.Errorf("Wait across Stop: %v, want ErrStopped", err)
	}
	if _, err := l.Wait(t.Context(), never); err != ErrStopped {
		t.Errorf("Wait after Stop: %v, want ErrStopped", err)
	}
}

// TestRate: a paced load cannot send faster than its rate: 2 clients at
// 40 requests/s in all each wait 50 ms before every request.
func TestRate(t *testing.T) {
	addr := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "1") })
	l := Options{Addr: addr, NewConn: 2, Rate: 40}.Start()
	wait(t, l, "6 answers", func(c Counts) bool { return c.OK >= 6 })
	if r := l.Report(); r.Elapsed < 150*time.Millisecond {
		t.Errorf("%d answers in %v at 40/s, want at least 150ms", r.OK, r.Elapsed)
	}
}

// TestRequestIsNotRetried: the POST has a body and no GetBody, so net/http
// cannot send it again on another connection when a reused one fails.
func TestRequestIsNotRetried(t *testing.T) {
	req := newRequest(t.Context(), "http://127.0.0.1:1/")
	if req.Method != http.MethodPost || req.Body == nil || req.GetBody != nil {
		t.Errorf("request %s with body %v, GetBody set: %t; want a POST with a body and no GetBody", req.Method, req.Body, req.GetBody != nil)
	}
}

func TestPIDOf(t *testing.T) {
	tests := []struct {
		body string
		want int
	}{
		{"hello from worker 0 (pid 4242, generation 7)\n", 4242},
		{"hello from instance 1 (pid 17)\n", 17},
		{"4242 0 1\n", 4242},
		{"4242", 4242},
		{"hello", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := PIDOf([]byte(tt.body)); got != tt.want {
			t.Errorf("PIDOf(%q) = %d, want %d", tt.body, got, tt.want)
		}
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection reset"},
		{fmt.Errorf("post: %w", io.EOF), "closed (EOF)"},
		{&readError{io.ErrUnexpectedEOF}, "read: closed (EOF)"},
		{&statusError{code: 502}, "status 502"},
		{os.ErrDeadlineExceeded, "timeout"},
		{errors.New("something"), "other"},
	}
	for _, tt := range tests {
		if got := Kind(tt.err); got != tt.want {
			t.Errorf("Kind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
