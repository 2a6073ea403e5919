package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// echoServer answers datagrams on a new socket of network, as udp-echo
// does, through answer, which returns the answers to send (none drops the
// datagram). It returns the socket's address.
func echoServer(t *testing.T, network string, answer func(seq []byte) [][]byte) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unixgram" {
		addr = filepath.Join(t.TempDir(), "server.sock")
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	setBuffers(c) // so that a busy machine drops nothing, which would change the counts
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, a := range answer(bytes.Clone(buf[:n])) {
				c.WriteTo(a, from)
			}
		}
	}()
	return c.LocalAddr().String()
}

func startDatagrams(t *testing.T, o DatagramOptions) *Datagrams {
	t.Helper()
	d, err := o.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

func waitDatagrams(t *testing.T, d *Datagrams, what string, cond func(DatagramCounts) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if c, err := d.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v; counts %+v", what, err, c)
	}
}

func TestDatagramsEveryOneAnswered(t *testing.T) {
	for _, network := range []string{"udp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			addr := echoServer(t, network, func(seq []byte) [][]byte {
				return [][]byte{fmt.Appendf(nil, "%s from worker 0 (pid 42, generation 1)", seq)}
			})
			d := startDatagrams(t, DatagramOptions{Network: network, Addr: addr, Rate: 2000})
			waitDatagrams(t, d, "500 answers", func(c DatagramCounts) bool { return c.Answered >= 500 })
			r, err := d.Stop()
			if err != nil {
				t.Fatal(err)
			}
			wantDropped := int64(0)
			if network == "unixgram" {
				wantDropped = -1
			}
			if r.Sent < 500 || r.Answered != r.Sent || r.Lost != 0 || r.Duplicated != 0 || r.Stray != 0 || r.ByPID[42] != r.Sent || r.Dropped != wantDropped || r.ClientDropped != wantDropped {
				t.Errorf("report %+v: want every datagram answered once, by pid 42", r)
			}
			if rate := r.Rate(); rate < 1500 || rate > 2500 {
				t.Errorf("rate %.0f/s, want about 2000", rate)
			}
			t.Logf("%d sent in %v (%.0f/s), max latency %v", r.Sent, r.Elapsed, r.Rate(), r.MaxLatency)
		})
	}
}

// TestDatagramsLostAndDuplicated: a server that drops every tenth datagram
// and answers every seventh twice, and sends one answer of nonsense.
func TestDatagramsLostAndDuplicated(t *testing.T) {
	addr := echoServer(t, "udp", func(seq []byte) [][]byte {
		n, _ := leadingNumber(seq)
		switch {
		case n%10 == 3:
			return nil
		case n%7 == 0:
			return [][]byte{seq, seq}
		case n == 5:
			return [][]byte{[]byte("hello"), seq}
		}
		return [][]byte{seq}
	})
	d := startDatagrams(t, DatagramOptions{Addr: addr, Rate: 5000, Wait: 200 * time.Millisecond})
	waitDatagrams(t, d, "1000 answers", func(c DatagramCounts) bool { return c.Answered >= 1000 })
	r, err := d.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var lost, dup int64
	for n := range r.Sent {
		switch {
		case n%10 == 3:
			lost++
		case n%7 == 0:
			dup++
		}
	}
	if r.Lost != lost || r.Duplicated != dup || r.Stray != 1 || r.Answered != r.Sent-lost || r.Dropped != 0 {
		t.Errorf("report %+v: want %d lost, %d duplicated, 1 stray of %d sent, none dropped by the kernel", r, lost, dup, r.Sent)
	}
	if len(r.LostSeqs) != maxErrs || r.LostSeqs[0] != 3 || r.LostSeqs[1] != 13 {
		t.Errorf("lost numbers %v, want the first %d: 3, 13, ...", r.LostSeqs, maxErrs)
	}
	if again, _ := d.Stop(); again.Sent != r.Sent || again.Lost != r.Lost {
		t.Errorf("Stop again: %+v, want %+v", again, r)
	}
}

func TestLeadingNumber(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "17": 17, "42 from worker 1 (pid 7)": 42} {
		if n, ok := leadingNumber([]byte(in)); !ok || n != want {
			t.Errorf("leadingNumber(%q) = %d, %t; want %d", in, n, ok, want)
		}
	}
	for _, in := range []string{"", "x1", " 1", "1234567890123456789"} {
		if n, ok := leadingNumber([]byte(in)); ok {
			t.Errorf("leadingNumber(%q) = %d, true; want false", in, n)
		}
	}
}

// TestDatagramsDroppedByTheKernel: a server that never reads, with the
// least receive buffer, loses every datagram, nearly all of them dropped
// by the kernel.
func TestDatagramsDroppedByTheKernel(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.UDPConn).SetReadBuffer(4096)
	d := startDatagrams(t, DatagramOptions{Addr: c.LocalAddr().String(), Rate: 5000, Wait: 100 * time.Millisecond})
	time.Sleep(200 * time.Millisecond) // the load's length; nothing to wait for
	r, err := d.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent < 500 || r.Lost != r.Sent || r.Dropped < r.Sent-50 || r.Dropped > r.Sent {
		t.Errorf("%d sent, %d lost, %d dropped by the kernel; want all lost, all but a few dropped", r.Sent, r.Lost, r.Dropped)
	}
}
