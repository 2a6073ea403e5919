// Package loadtest sends bounded HTTP load at a server on loopback and
// counts what failed. Tests use it to prove that reloads lose nothing.
package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load sends requests to a server until stopped: some clients open a new
// connection per request, others keep one connection alive. Keep-alive
// requests are POSTs with a body, which net/http never retries by itself,
// so a connection that a draining worker closes under a request shows up
// as the failure it is.
type Load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string // the first few
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// Start sends requests to http://addr/ from newConn clients that open a
// connection per request and keepAlive clients that reuse one, until Stop.
func Start(addr string, newConn, keepAlive int) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	for i := 0; i < newConn+keepAlive; i++ {
		tr := &http.Transport{DisableKeepAlives: i < newConn, MaxIdleConnsPerHost: 1}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				l.one(c, "http://"+addr+"/")
			}
		}()
	}
	return l
}

func (l *Load) one(c *http.Client, url string) {
	resp, err := c.Post(url, "text/plain", strings.NewReader("ping"))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
	}
	if err != nil {
		l.failed.Add(1)
		l.mu.Lock()
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		l.mu.Unlock()
		return
	}
	l.ok.Add(1)
}

// Stop ends the load and returns the counts and the first few errors.
func (l *Load) Stop() (ok, failed int64, errs []string) {
	l.cancel()
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}
