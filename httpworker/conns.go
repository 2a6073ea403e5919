package httpworker

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// conns counts a server's open connections, so that the grace period can
// end as soon as none is left, and holds the draining flag that makes every
// response carry "Connection: close".
type conns struct {
	draining atomic.Bool

	mu   sync.Mutex
	open int           // connections between StateNew and StateClosed or StateHijacked
	none chan struct{} // closed when open drops to 0 after allClosed; nil otherwise
}

// track wraps srv.Handler and srv.ConnState so that the returned conns sees
// every connection and can close the connection after each response.
func track(srv *http.Server) *conns {
	c := &conns{}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.draining.Load() {
			// The server closes the connection after this response, and
			// the client sends its next request on a new connection,
			// which another worker accepts. SetKeepAlivesEnabled(false)
			// would instead close idle connections at once.
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	hook := srv.ConnState
	srv.ConnState = func(nc net.Conn, s http.ConnState) {
		c.change(s)
		if hook != nil {
			hook(nc, s)
		}
	}
	return c
}

// change counts a connection's state change. http.Server calls ConnState
// with StateNew from its accept loop, before Serve can return, so once every
// Serve has returned the count includes every accepted connection.
func (c *conns) change(s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.open++
	case http.StateClosed, http.StateHijacked:
		c.open--
		if c.open == 0 && c.none != nil {
			close(c.none)
			c.none = nil
		}
	}
}

// allClosed returns a channel that is closed once no connection is open,
// and the number open now. Call it only after every Serve has returned.
func (c *conns) allClosed() (<-chan struct{}, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.open == 0 {
		close(ch)
	} else {
		c.none = ch
	}
	return ch, c.open
}
