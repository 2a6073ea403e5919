package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
)

// loadSpec describes one load run against http://addr/.
type loadSpec struct {
	addr      string
	clients   int     // concurrent clients, each with its own connection
	keepAlive bool    // reuse one connection per client; else a new connection per request
	rate      float64 // total requests per second, paced; 0 = as fast as possible
}

// loadResult is what one load run saw, as results.json keeps it. A request fails on a connection
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

// runLoad sends load until ctx is done and returns what it saw.
func runLoad(ctx context.Context, s loadSpec) *loadResult {
	l := s.start()
	<-ctx.Done()
	return result(l.Report())
}

// start starts the load s describes, until Stop or Report.
func (s loadSpec) start() *loadtest.Load {
	o := loadtest.Options{Addr: s.addr, Rate: s.rate, Timeout: 5 * time.Second} // 100 ms buckets
	if s.keepAlive {
		o.KeepAlive = s.clients
	} else {
		o.NewConn = s.clients
	}
	return o.Start()
}

// result is the part of a load's report that results.json keeps.
func result(r loadtest.Report) *loadResult {
	return &loadResult{Seconds: r.Elapsed.Seconds(), OK: r.OK, Failed: r.Failed, Conns: r.Conns, Kinds: r.Kinds,
		RPS: float64(r.OK) / r.Elapsed.Seconds(), P50ms: ms(r.Quantile(0.50)), P99ms: ms(r.Quantile(0.99)),
		PerPID: r.ByPID, BucketOK: r.BucketOK, BucketKO: r.BucketFailed}
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
