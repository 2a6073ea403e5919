// Package loadtest is corral's one load generator, for HTTP (Load) and for
// datagram servers (Datagrams, in datagram.go): tests use it to prove that
// reloads lose nothing, and bench to measure throughput, latency and
// failures under reloads.
//
// A Load is a fixed set of clients that send requests to one server on
// loopback, one after another, until Stop: some open a new connection per
// request, others keep one connection alive. Every request is a POST with
// a body and no GetBody, which net/http never retries by itself, so a
// connection that a draining worker closes under a request shows up as the
// failure it is. Each answer counts for the PID its body names (see
// PIDOf). Counts are live: a test reads them with Counts, or waits with
// Wait until a condition on them holds, woken by each answered or failed
// request rather than a timer. Mark starts a second tally of the requests
// sent from then on. Report, at the end, adds latencies and a time series.
//
// Start owns the clients' goroutines; Stop (or Report) ends them and waits
// for them, cancelling the requests in flight, which count neither as
// answered nor as failed.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options describe a load. Addr is required; the zero value of every other
// field is its documented default.
type Options struct {
	// Addr is the server's host:port; the requests go to http://Addr/.
	Addr string
	// NewConn clients open a new connection for every request.
	NewConn int
	// KeepAlive clients keep one connection open and reuse it, opening
	// another only when the server closes it.
	KeepAlive int
	// Rate paces the load to this many requests per second over all
	// clients, each client at its share; 0 sends as fast as answers come.
	Rate float64
	// Timeout bounds each request; 0 means 10 s.
	Timeout time.Duration
	// Bucket is the width of Report's time series; 0 means 100 ms.
	Bucket time.Duration
}

// maxBuckets bounds a run's time series: 20 minutes of 100 ms buckets.
// Requests after the last bucket count in it.
const maxBuckets = 12000

// maxErrs is how many failures a load keeps the message of.
const maxErrs = 10

// Tally counts requests.
type Tally struct {
	OK     int64         // answered with a 2xx status
	Failed int64         // a connection error, a timeout or another status
	ByPID  map[int]int64 // answered requests by the PID their body names (0: none)
}

// Counts is what a load has seen so far.
type Counts struct {
	Tally
	// SinceMark counts the requests sent after the last call to Mark;
	// it is empty before the first.
	SinceMark Tally
	Errs      []string         // the first failures, in order
	Kinds     map[string]int64 // failures by cause (see Kind)
	Conns     int64            // connections opened
}

// Report is everything a load saw, once it has stopped.
type Report struct {
	Counts
	Elapsed time.Duration
	// Latencies of the answered requests, sorted.
	Latencies []time.Duration
	// BucketOK and BucketFailed count requests by the Options.Bucket in
	// which they were sent, from Start to Stop.
	BucketOK, BucketFailed []int64
}

// Load is a running load. Its methods may be called from any goroutine.
type Load struct {
	o      Options
	url    string
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed once every client has returned
	epoch  atomic.Int64  // Mark's count: a request remembers it when sent

	mu        sync.Mutex
	counts    Counts
	markEpoch int64
	bucketOK  []int64
	bucketKO  []int64
	changed   chan struct{} // closed and replaced on a new result while waiters > 0
	waiters   int
	elapsed   time.Duration     // from Start to the first Report
	latencies [][]time.Duration // one per client, each written only by its client until done
}

// Start starts a load of newConn clients that open a connection per
// request and keepAlive clients that reuse one, on http://addr/.
func Start(addr string, newConn, keepAlive int) *Load {
	return Options{Addr: addr, NewConn: newConn, KeepAlive: keepAlive}.Start()
}

// Start starts the load that o describes. It runs until Stop or Report.
func (o Options) Start() *Load {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Bucket == 0 {
		o.Bucket = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := o.NewConn + o.KeepAlive
	l := &Load{o: o, url: "http://" + o.Addr + "/", start: time.Now(), cancel: cancel,
		done: make(chan struct{}), changed: make(chan struct{}), latencies: make([][]time.Duration, n)}
	l.counts.ByPID, l.counts.Kinds = map[int]int64{}, map[string]int64{}
	for i := range n {
		l.wg.Go(func() { l.client(ctx, i, i >= o.NewConn) })
	}
	go func() { l.wg.Wait(); close(l.done) }()
	return l
}

// client sends requests until ctx ends, paced when o.Rate is set.
func (l *Load) client(ctx context.Context, i int, keepAlive bool) {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: l.o.Timeout}
	var tick <-chan time.Time
	if l.o.Rate > 0 {
		clients := float64(l.o.NewConn + l.o.KeepAlive)
		t := time.NewTicker(time.Duration(clients / l.o.Rate * float64(time.Second)))
		defer t.Stop()
		tick = t.C
	}
	for ctx.Err() == nil {
		if tick != nil {
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
		epoch, sent := l.epoch.Load(), time.Now()
		pid, err := l.one(ctx, c)
		if err != nil && ctx.Err() != nil {
			return // cut short by Stop: not the server's failure
		}
		took := time.Since(sent)
		if err == nil {
			l.latencies[i] = append(l.latencies[i], took)
		}
		l.record(epoch, sent, pid, err)
	}
}

// one sends one POST and returns the PID its answer names.
func (l *Load) one(ctx context.Context, c *http.Client) (int, error) {
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			l.mu.Lock()
			l.counts.Conns++
			l.mu.Unlock()
		}
	}}
	resp, err := c.Do(newRequest(httptrace.WithClientTrace(ctx, trace), l.url))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, &readError{err}
	}
	if resp.StatusCode/100 != 2 {
		return 0, &statusError{resp.StatusCode, fmt.Sprintf("POST %s: %s: %q", l.url, resp.Status, body[:min(len(body), 200)])}
	}
	return PIDOf(body), nil
}

// newRequest returns the POST that every client sends. http.NewRequest sets
// GetBody for a strings.Reader; without it net/http cannot resend the body,
// so it never retries the request on another connection by itself.
func newRequest(ctx context.Context, url string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("ping"))
	if err != nil {
		panic(err) // the URL is built from Options.Addr, which Start does not check
	}
	req.GetBody = nil
	return req
}

// record counts one result and wakes the waiters.
func (l *Load) record(epoch int64, sent time.Time, pid int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := min(int(sent.Sub(l.start)/l.o.Bucket), maxBuckets-1)
	for len(l.bucketOK) <= b {
		l.bucketOK, l.bucketKO = append(l.bucketOK, 0), append(l.bucketKO, 0)
	}
	marked := l.markEpoch > 0 && epoch == l.markEpoch
	if err != nil {
		l.counts.Failed++
		l.bucketKO[b]++
		l.counts.Kinds[Kind(err)]++
		if len(l.counts.Errs) < maxErrs {
			l.counts.Errs = append(l.counts.Errs, err.Error())
		}
		if marked {
			l.counts.SinceMark.Failed++
		}
	} else {
		l.counts.OK++
		l.counts.ByPID[pid]++
		l.bucketOK[b]++
		if marked {
			l.counts.SinceMark.OK++
			l.counts.SinceMark.ByPID[pid]++
		}
	}
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// Mark starts SinceMark afresh: from now on it counts the requests sent
// after this call.
func (l *Load) Mark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.markEpoch = l.epoch.Add(1)
	l.counts.SinceMark = Tally{ByPID: map[int]int64{}}
}

// Counts returns a copy of the counts so far.
func (l *Load) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshot()
}

// snapshot copies l.counts; l.mu is held.
func (l *Load) snapshot() Counts {
	c := l.counts
	c.ByPID, c.Kinds, c.Errs = maps.Clone(c.ByPID), maps.Clone(c.Kinds), slices.Clone(c.Errs)
	c.SinceMark.ByPID = maps.Clone(c.SinceMark.ByPID)
	return c
}

// ErrStopped is Wait's error when the load stopped before its condition held.
var ErrStopped = errors.New("loadtest: the load stopped")

// Wait returns the counts once cond reports true for them. It checks at
// once and then after every request that ends. When ctx ends first it
// returns the last counts and an error that wraps ctx.Err(); when the load
// stops first, the last counts and ErrStopped.
func (l *Load) Wait(ctx context.Context, cond func(Counts) bool) (Counts, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		// Every result is recorded under l.mu before its client returns,
		// so once done is closed the counts are final.
		c := l.snapshot()
		if cond(c) {
			return c, nil
		}
		select {
		case <-l.done:
			return c, ErrStopped
		default:
		}
		changed := l.changed
		l.waiters++
		l.mu.Unlock()
		var err error
		select {
		case <-changed:
		case <-l.done:
		case <-ctx.Done():
			err = fmt.Errorf("loadtest: wait: %w", ctx.Err())
		}
		l.mu.Lock()
		l.waiters--
		if err != nil {
			return l.snapshot(), err
		}
	}
}

// Stop ends the load, waits for its clients and returns how many requests
// were answered, how many failed, and the first failures. Calling it again
// returns the same.
func (l *Load) Stop() (ok, failed int64, errs []string) {
	r := l.Report()
	return r.OK, r.Failed, r.Errs
}

// Report stops the load, if it runs, and returns everything it saw.
func (l *Load) Report() Report {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.elapsed == 0 {
		l.elapsed = time.Since(l.start)
	}
	r := Report{Counts: l.snapshot(), Elapsed: l.elapsed}
	n := min(int(l.elapsed/l.o.Bucket)+1, maxBuckets)
	r.BucketOK, r.BucketFailed = make([]int64, n), make([]int64, n)
	copy(r.BucketOK, l.bucketOK)
	copy(r.BucketFailed, l.bucketKO)
	for _, lat := range l.latencies {
		r.Latencies = append(r.Latencies, lat...)
	}
	slices.Sort(r.Latencies)
	return r
}

// Quantile returns the latency below which fraction q of the answered
// requests fell, or 0 when none was answered.
func (r *Report) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(int(q*float64(len(r.Latencies))), len(r.Latencies)-1)]
}

// PIDOf returns the PID an answer names: the number after the first "pid "
// ("hello from worker 0 (pid 4242, ...)"), or else the number the body
// starts with ("4242 0 1"); 0 when there is neither.
func PIDOf(body []byte) int {
	s := string(body)
	if _, after, ok := strings.Cut(s, "pid "); ok {
		s = after
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// readError is a failure while reading an answer's body.
type readError struct{ err error }

func (e *readError) Error() string { return "read the answer: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// statusError is an answer with a status other than 2xx.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// Kind names the cause of a failed request, for a table of failures:
// "connection refused", "connection reset", "broken pipe", "no local port",
// "closed (EOF)", "timeout", "other", or "status N"; "read: " comes first
// when the answer's headers arrived but not its body.
func Kind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("status %d", se.code)
	}
	var re *readError
	if errors.As(err, &re) {
		return "read: " + Kind(re.err)
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}
