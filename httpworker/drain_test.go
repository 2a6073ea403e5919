package httpworker_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/httpworker"
	"github.com/corraldev/corral/internal/testenv"
)

// TestRequestOnIdleConnAfterStop is the deterministic form of the bug: a
// request sent on an idle keep-alive connection once the worker has begun to
// drain. The naive drain drops it; httpworker answers with Connection: close.
func TestRequestOnIdleConnAfterStop(t *testing.T) {
	tests := []struct {
		name       string
		helper     string
		wantAnswer bool
	}{
		{name: "naive Shutdown drops it", helper: "naive", wantAnswer: false},
		{name: "httpworker answers it", helper: "serve", wantAnswer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ln := listen(t)
			w := startWorker(t, tt.helper, []*os.File{ln}, graceEnv+"=1m")
			await(t, "READY=1", w.ready, w)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(deadline))
			br := bufio.NewReader(conn)
			if resp, err := roundTrip(conn, br); err != nil || resp.Close {
				t.Fatalf("first request: %v, want a keep-alive answer", err)
			}

			if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			await(t, "STOPPING=1", w.stopping, w)
			resp, err := roundTrip(conn, br)
			switch {
			case tt.wantAnswer && err != nil:
				t.Errorf("request after STOPPING=1: %v, want an answer", err)
			case tt.wantAnswer && !resp.Close:
				t.Errorf("answer after STOPPING=1 has no Connection: close")
			case !tt.wantAnswer && err == nil:
				t.Errorf("request after STOPPING=1 got %s, want the connection dropped", resp.Status)
			}
			await(t, "exit", w.exited, nil)
			if w.err != nil {
				t.Errorf("worker exited with %v, want status 0", w.err)
			}
		})
	}
}

// roundTrip sends one POST on conn and reads the answer from br.
func roundTrip(conn net.Conn, br *bufio.Reader) (*http.Response, error) {
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nping"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return nil, err
	}
	return resp, nil
}

// TestInFlightRequestCompletes holds a request in its handler across SIGTERM
// and a grace period too short for it, so Shutdown must wait for it.
func TestInFlightRequestCompletes(t *testing.T) {
	addr, ln := listen(t)
	release, releaseW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseW.Close()
	w := startWorker(t, "serve", []*os.File{ln, release}, graceEnv+"=1ns", releaseEnv+"=4")
	release.Close() // the worker holds it as fd 4
	await(t, "READY=1", w.ready, w)

	client := &http.Client{Timeout: deadline}
	resp, err := client.Get("http://" + addr + "/block") // returns once the handler has sent its headers
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await(t, "STOPPING=1", w.stopping, w)
	if _, err := releaseW.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "released" {
		t.Errorf("in-flight request: body %q, %v; want %q", body, err, "released")
	}
	await(t, "exit", w.exited, nil)
	if w.err != nil {
		t.Errorf("worker exited with %v, want status 0", w.err)
	}
}

// TestDrainWithBlockingSocket clears O_NONBLOCK on the shared socket, as
// corral does each time it starts a worker, so that the worker's accept(2)
// blocks in the kernel after its next connection. The drain must not wait
// for another client to come along and unblock it.
func TestDrainWithBlockingSocket(t *testing.T) {
	addr, ln := listen(t)
	w := startWorker(t, "serve", []*os.File{ln})
	await(t, "READY=1", w.ready, w)
	if err := unix.SetNonblock(int(ln.Fd()), false); err != nil {
		t.Fatal(err)
	}
	testenv.Get(t, addr)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await(t, "STOPPING=1", w.stopping, w)
	await(t, "exit", w.exited, nil)
	if w.err != nil {
		t.Errorf("worker exited with %v, want status 0", w.err)
	}
}

func TestServeWithoutSockets(t *testing.T) {
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "")
	err := httpworker.Serve(t.Context(), &http.Server{}, httpworker.Options{})
	if !errors.Is(err, httpworker.ErrNoListeners) {
		t.Fatalf("Serve: %v, want ErrNoListeners", err)
	}
}

// TestServeFallbackUntilCancel runs Serve in the test process on
// FallbackAddr, and stops it by cancelling its context.
func TestServeFallbackUntilCancel(t *testing.T) {
	ns := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.path)
	t.Setenv("LISTEN_PID", "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- httpworker.Serve(ctx, &http.Server{}, httpworker.Options{FallbackAddr: "127.0.0.1:0"})
	}()
	await(t, "READY=1", ns.ready, nil)
	if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Errorf("NOTIFY_SOCKET=%q after READY=1, want it unset", v)
	}
	cancel()
	await(t, "STOPPING=1", ns.stopping, nil)
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve after cancel: %v, want nil", err)
		}
	case <-time.After(deadline):
		t.Fatalf("Serve still running %v after cancel", deadline)
	}
}
