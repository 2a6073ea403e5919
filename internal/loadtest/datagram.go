package loadtest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/internal/proc"
)

// A Datagrams load is one client socket that sends a steady stream of
// numbered datagrams to a datagram server ("0", "1", "2", ...) and reads
// the answers, each of which must start with the number it answers
// ("7 from worker 0 (pid 4242, generation 1)": the examples' udp-echo
// answer). Every number is sent once, so a datagram the server never
// answered is lost, and a number answered twice is a duplicate. Stop ends
// the sending and waits for the answers still on their way.

// DatagramOptions describe a datagram load. Addr is required; the zero
// value of every other field is its documented default.
type DatagramOptions struct {
	// Network is "udp" (the default) or "unixgram"; Addr is HOST:PORT or
	// the path of the server's socket.
	Network, Addr string
	// Rate is the datagrams sent per second, evenly; 0 means 5000.
	Rate int
	// Wait bounds how long Stop waits for the answers to the datagrams
	// sent last; 0 means 3 s. A datagram unanswered by then is lost.
	Wait time.Duration
}

// DatagramCounts is what a datagram load has seen so far.
type DatagramCounts struct {
	Sent       int64         // datagrams sent
	Answered   int64         // numbers answered at least once
	Duplicated int64         // answers beyond the first to a number
	Stray      int64         // answers that name no number sent
	ByPID      map[int]int64 // first answers by the PID they name (see PIDOf)
	MaxLatency time.Duration // the longest wait for a first answer
}

// DatagramReport is everything a datagram load saw, once it has stopped.
type DatagramReport struct {
	DatagramCounts
	Lost int64 // sent, never answered
	// Dropped counts the datagrams the kernel dropped meanwhile at the
	// UDP sockets bound to the server's port, for a full receive buffer:
	// those of Lost that no worker read in time (/proc/net/udp). It is -1
	// when unknown: a unix datagram server, or no /proc.
	Dropped int64
	// ClientDropped counts the answers the kernel dropped at the load's
	// own socket, whose reader fell behind; -1 when unknown.
	ClientDropped int64
	Elapsed       time.Duration // from Start to the last datagram sent
	// LostSeqs are the first lost numbers, in order.
	LostSeqs []int64
}

// Rate returns the datagrams sent per second.
func (r DatagramReport) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// Datagrams is a running datagram load. Its methods may be called from any
// goroutine.
type Datagrams struct {
	o       DatagramOptions
	conn    net.PacketConn
	to      net.Addr
	start   time.Time
	stop    chan struct{} // closed by Stop: the sender ends
	sending chan struct{} // closed when the sender has returned
	reading chan struct{} // closed when the reader has returned
	local   string        // the client's socket file, for unixgram
	drops   int64         // the server port's drops at Start, or -1

	mu          sync.Mutex
	counts      DatagramCounts
	sentAt      []int64 // by number: when it was sent, in ns since start
	answers     []uint8 // by number: answers seen, at most 255
	sendErr     error
	clientDrops int64
	elapsed     time.Duration
	changed     chan struct{} // closed and replaced on each first answer
	report      *DatagramReport
}

// maxDatagrams bounds a load: 20 minutes at 50,000 datagrams per second.
const maxDatagrams = 60_000_000

// Start opens the client socket and starts sending. The load runs until
// Stop.
func (o DatagramOptions) Start() (*Datagrams, error) {
	if o.Network == "" {
		o.Network = "udp"
	}
	if o.Rate <= 0 {
		o.Rate = 5000
	}
	if o.Wait <= 0 {
		o.Wait = 3 * time.Second
	}
	d := &Datagrams{o: o, stop: make(chan struct{}), sending: make(chan struct{}), reading: make(chan struct{}),
		changed: make(chan struct{})}
	if err := d.open(); err != nil {
		return nil, err
	}
	d.counts.ByPID = map[int]int64{}
	d.drops = d.serverDrops()
	d.start = time.Now()
	go d.send()
	go d.read()
	return d, nil
}

// open opens the client socket, with a receive buffer large enough that
// the client itself loses no answer.
func (d *Datagrams) open() error {
	var err error
	switch d.o.Network {
	case "udp":
		if d.to, err = net.ResolveUDPAddr("udp", d.o.Addr); err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
		local := "127.0.0.1:0"
		if ip := d.to.(*net.UDPAddr).IP; ip.To4() == nil {
			local = "[::1]:0"
		}
		d.conn, err = net.ListenPacket("udp", local)
	case "unixgram":
		dir, derr := os.MkdirTemp("", "corral-loadtest-")
		if derr != nil {
			return fmt.Errorf("loadtest: %w", derr)
		}
		d.local = filepath.Join(dir, "client.sock")
		d.to = &net.UnixAddr{Name: d.o.Addr, Net: "unixgram"}
		d.conn, err = net.ListenPacket("unixgram", d.local)
	default:
		return fmt.Errorf("loadtest: network %q: want udp or unixgram", d.o.Network)
	}
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	setBuffers(d.conn)
	return nil
}

// serverDrops returns the kernel's drops at the server's UDP port, or -1.
func (d *Datagrams) serverDrops() int64 {
	a, ok := d.to.(*net.UDPAddr)
	if !ok {
		return -1
	}
	n, err := proc.UDPDrops(a.Port)
	if err != nil {
		return -1
	}
	return n
}

// clientBuffer is the client socket's receive and send buffer.
const clientBuffer = 8 << 20

// setBuffers gives the client socket clientBuffer bytes to receive and
// send, past net.core.rmem_max and wmem_max where the process may
// (CAP_NET_ADMIN), else as much as they allow.
func setBuffers(c net.PacketConn) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], clientBuffer) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], clientBuffer)
			}
		}
	})
}

// send sends the numbers at the load's rate until Stop.
func (d *Datagrams) send() {
	defer close(d.sending)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 0, 20)
	var n int64
	for {
		due := int64(time.Since(d.start).Seconds() * float64(d.o.Rate))
		for ; n < due && n < maxDatagrams; n++ {
			d.mu.Lock()
			d.sentAt = append(d.sentAt, int64(time.Since(d.start)))
			d.answers = append(d.answers, 0)
			d.counts.Sent++
			d.mu.Unlock()
			if _, err := d.conn.WriteTo(strconv.AppendInt(buf[:0], n, 10), d.to); err != nil {
				d.mu.Lock()
				d.sendErr = fmt.Errorf("loadtest: send datagram %d: %w", n, err)
				d.mu.Unlock()
				return
			}
		}
		select {
		case <-d.stop:
			return
		case <-tick.C:
		}
	}
}

// read records every answer until the socket is closed.
func (d *Datagrams) read() {
	defer close(d.reading)
	buf := make([]byte, 2048)
	for {
		n, _, err := d.conn.ReadFrom(buf)
		if err != nil {
			return // closed by Stop
		}
		d.record(buf[:n], time.Since(d.start))
	}
}

// record counts one answer.
func (d *Datagrams) record(answer []byte, at time.Duration) {
	seq, ok := leadingNumber(answer)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !ok || seq >= int64(len(d.answers)) {
		d.counts.Stray++
		return
	}
	if d.answers[seq] > 0 {
		d.counts.Duplicated++
		if d.answers[seq] < 255 {
			d.answers[seq]++
		}
		return
	}
	d.answers[seq] = 1
	d.counts.Answered++
	d.counts.ByPID[PIDOf(answer)]++
	if lat := at - time.Duration(d.sentAt[seq]); lat > d.counts.MaxLatency {
		d.counts.MaxLatency = lat
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// leadingNumber returns the decimal number b starts with.
func leadingNumber(b []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(b) && i < 18 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, i > 0 && (i == len(b) || b[i] < '0' || b[i] > '9')
}

// Counts returns a copy of the counts so far.
func (d *Datagrams) Counts() DatagramCounts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshot()
}

func (d *Datagrams) snapshot() DatagramCounts {
	c := d.counts
	c.ByPID = maps.Clone(c.ByPID)
	return c
}

// Wait returns the counts once cond reports true for them. It checks at
// once and then after every first answer. When ctx ends first it returns
// the last counts and an error that wraps ctx.Err(); when the load has
// stopped, the last counts and ErrStopped.
func (d *Datagrams) Wait(ctx context.Context, cond func(DatagramCounts) bool) (DatagramCounts, error) {
	for {
		d.mu.Lock()
		c, changed, stopped := d.snapshot(), d.changed, d.report != nil
		d.mu.Unlock()
		switch {
		case cond(c):
			return c, nil
		case stopped:
			return c, ErrStopped
		}
		select {
		case <-changed:
		case <-d.reading:
			return d.Counts(), ErrStopped
		case <-ctx.Done():
			return c, fmt.Errorf("loadtest: wait: %w", ctx.Err())
		}
	}
}

// Stop ends the sending, waits until every datagram sent is answered or
// the load's Wait has passed, closes the socket and returns the report, and
// the error that stopped the sending early, if one did. Calling it again
// returns the same.
func (d *Datagrams) Stop() (DatagramReport, error) {
	d.mu.Lock()
	if d.report != nil {
		defer d.mu.Unlock()
		return *d.report, d.sendErr
	}
	d.mu.Unlock()
	close(d.stop)
	<-d.sending
	d.mu.Lock()
	d.elapsed = time.Since(d.start)
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d.o.Wait)
	defer cancel()
	d.Wait(ctx, func(c DatagramCounts) bool { return c.Answered == c.Sent })
	d.clientDrops = -1
	if a, ok := d.conn.LocalAddr().(*net.UDPAddr); ok {
		if n, err := proc.UDPDrops(a.Port); err == nil {
			d.clientDrops = n // a new socket: all its drops are this load's
		}
	}
	d.conn.Close()
	<-d.reading
	if d.local != "" {
		os.RemoveAll(filepath.Dir(d.local))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r := DatagramReport{DatagramCounts: d.snapshot(), Elapsed: d.elapsed, Dropped: -1, ClientDropped: d.clientDrops}
	if now := d.serverDrops(); now >= 0 && d.drops >= 0 {
		r.Dropped = now - d.drops
	}
	for seq, n := range d.answers {
		if n == 0 {
			r.Lost++
			if len(r.LostSeqs) < maxErrs {
				r.LostSeqs = append(r.LostSeqs, int64(seq))
			}
		}
	}
	d.report = &r
	return r, d.sendErr
}
