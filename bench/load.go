package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadSpec describes one load run against http://addr/.
type loadSpec struct {
	addr      string
	clients   int     // concurrent clients, each with its own connection
	keepAlive bool    // reuse one connection per client; else a new connection per request
	rate      float64 // total requests per second, paced; 0 = as fast as possible
	bucket    time.Duration
}

// loadResult is what one load run saw. A request fails on a connection
// error, a timeout or a non-2xx status.
type loadResult struct {
	Seconds  float64          `json:"seconds"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Conns    int64            `json:"connections"` // connections opened
	Kinds    map[string]int64 `json:"failure_kinds,omitempty"`
	RPS      float64          `json:"rps"`
	P50ms    float64          `json:"p50_ms"`
	P99ms    float64          `json:"p99_ms"`
	PerPID   map[int]int64    `json:"per_pid"`
	BucketOK []int64          `json:"bucket_ok,omitempty"`
	BucketKO []int64          `json:"bucket_failed,omitempty"`
}

// maxBuckets bounds a run's time series: 20 minutes of 100ms buckets.
const maxBuckets = 12000

var pidRE = regexp.MustCompile(`pid (\d+)`)

// runLoad sends load until ctx is done and returns what it saw.
func runLoad(ctx context.Context, s loadSpec) *loadResult {
	if s.bucket == 0 {
		s.bucket = 100 * time.Millisecond
	}
	okB := make([]atomic.Int64, maxBuckets)
	koB := make([]atomic.Int64, maxBuckets)
	type clientOut struct {
		lat    []time.Duration
		perPID map[int]int64
		kinds  map[string]int64
		ok, ko int64
		conns  int64
	}
	outs := make([]clientOut, s.clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[i]
			o.perPID, o.kinds = map[int]int64{}, map[string]int64{}
			tr := &http.Transport{DisableKeepAlives: !s.keepAlive, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			var tick *time.Ticker
			if s.rate > 0 {
				tick = time.NewTicker(time.Duration(float64(s.clients) / s.rate * float64(time.Second)))
				defer tick.Stop()
			}
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
				t0 := time.Now()
				pid, kind := one(ctx, c, "http://"+s.addr+"/", &o.conns)
				if ctx.Err() != nil && kind != "" {
					return // cut short by the end of the run: not the server's failure
				}
				b := int(t0.Sub(start) / s.bucket)
				if b >= maxBuckets {
					b = maxBuckets - 1
				}
				if kind != "" {
					o.ko++
					o.kinds[kind]++
					koB[b].Add(1)
					continue
				}
				o.ok++
				o.lat = append(o.lat, time.Since(t0))
				o.perPID[pid]++
				okB[b].Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r := &loadResult{Seconds: el.Seconds(), Kinds: map[string]int64{}, PerPID: map[int]int64{}}
	var lat []time.Duration
	for _, o := range outs {
		r.OK += o.ok
		r.Failed += o.ko
		r.Conns += o.conns
		lat = append(lat, o.lat...)
		for k, v := range o.perPID {
			r.PerPID[k] += v
		}
		for k, v := range o.kinds {
			r.Kinds[k] += v
		}
	}
	r.RPS = float64(r.OK) / el.Seconds()
	slices.Sort(lat)
	r.P50ms, r.P99ms = ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99))
	n := min(int(el/s.bucket)+1, maxBuckets)
	for i := range n {
		r.BucketOK = append(r.BucketOK, okB[i].Load())
		r.BucketKO = append(r.BucketKO, koB[i].Load())
	}
	return r
}

// one sends a POST (which net/http never retries on its own, so a
// connection closed under a request counts as the failure it is) and
// returns the answering worker's PID, or the kind of failure. It counts
// the connections it opens in *conns.
func one(ctx context.Context, c *http.Client, url string, conns *int64) (pid int, kind string) {
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			*conns++
		}
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, url, strings.NewReader("ping"))
	resp, err := c.Do(req)
	if err != nil {
		return 0, failureKind(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "read: " + failureKind(err)
	}
	if resp.StatusCode/100 != 2 {
		return 0, "status " + strconv.Itoa(resp.StatusCode)
	}
	if m := pidRE.FindSubmatch(body); m != nil {
		pid, _ = strconv.Atoi(string(m[1]))
	}
	return pid, ""
}

// failureKind names an error by its cause, for the failure table.
func failureKind(err error) string {
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

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitServing polls addr with fresh connections until a request gets a 2xx,
// and returns when that happened.
func waitServing(ctx context.Context, addr string, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 250 * time.Millisecond}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, errors.New("wait for first response: " + ctx.Err().Error())
		case <-time.After(2 * time.Millisecond): // polling interval: the port gives no event
		}
	}
}
