package workers

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/corraldev/corral/notify"
)

// TestHeraldStopSendsQueued stops the herald at the moment that used to
// lose the last message: a message is queued and stop is called after run
// has found the queue empty and before it waits, so that both send's wake
// and stop's quit are ready when it does. Which ready case a select takes is
// random, so the moment is made 100 times, each of which must deliver.
func TestHeraldStopSendsQueued(t *testing.T) {
	sys := newFakeSystemd(t)
	up := notify.NewUpstream()
	var lost []int
	for i := range 100 {
		h := makeHerald(up, t.Errorf)
		status := fmt.Sprintf("stopping %d", i)
		h.idle = func() {
			h.idle = nil // only the first time run waits
			h.send(upMsg{kind: upStopping, status: status})
			close(h.quit) // what stop does, without waiting for run
		}
		skip := len(sys.all())
		go h.run()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: run did not return within 10s of stop", i)
		}
		// The herald wrote any datagram before done was closed; a marker
		// sent now arrives after it.
		marker := fmt.Sprintf("marker %d", i)
		if err := up.Status(marker); err != nil {
			t.Fatal(err)
		}
		end := sys.waitFor(t, skip, "STATUS="+marker)
		if !slices.Contains(sys.all()[skip:end], "STOPPING=1\nSTATUS="+status) {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("stop lost the queued STOPPING=1 in %d of 100 rounds: %v", len(lost), lost)
	}
}

// TestHeraldKeepsOrder sends a sequence and stops at once: every message
// arrives, in order, with a status line waiting behind another replacing it.
func TestHeraldKeepsOrder(t *testing.T) {
	sys := newFakeSystemd(t)
	h := makeHerald(notify.NewUpstream(), t.Errorf)
	h.send(upMsg{kind: upReady, status: "ready"})
	h.send(upMsg{kind: upStatus, status: "one"})
	h.send(upMsg{kind: upStatus, status: "two"})
	h.send(upMsg{kind: upStopping, status: "bye"})
	go h.run()
	h.stop(10 * time.Second)
	select {
	case <-h.done:
	default:
		t.Fatal("stop returned before run did, with a manager that reads")
	}
	want := []string{"READY=1\nSTATUS=ready", "STATUS=two", "STOPPING=1\nSTATUS=bye"}
	sys.waitFor(t, len(want)-1, "STOPPING=1")
	if got := sys.all(); !slices.Equal(got, want) {
		t.Fatalf("manager got %q, want %q", got, want)
	}
}
