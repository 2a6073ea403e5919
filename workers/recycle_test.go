package workers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/httpworker"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

func init() {
	helpers["hog"] = hogHelper
}

// hogHelper serves its identity as httpHelper does. Once the test opens
// its gate (CORRAL_TEST_GATE plus its slot) it takes CORRAL_TEST_HOG_MB
// MiB of memory and writes to every page, as a leak would. With
// CORRAL_TEST_ONCE set, every start of a slot after its first fails at
// once, as a release broken on disk would. With CORRAL_TEST_START_GATE, a
// worker of a generation after the first starts serving only once the
// test opens that gate plus its slot.
func hogHelper() int {
	slot := os.Getenv("CORRAL_WORKER_INDEX")
	if gate := os.Getenv("CORRAL_TEST_START_GATE"); gate != "" && os.Getenv("CORRAL_GENERATION") != "1" {
		waitGate(gate + slot)
	}
	if dir := os.Getenv("CORRAL_TEST_ONCE"); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, "started-"+slot), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test worker: slot", slot, "started before: failing")
			return 1
		}
		f.Close()
	}
	var hoard [][]byte
	go func() {
		waitGate(os.Getenv("CORRAL_TEST_GATE") + slot)
		mb, _ := strconv.Atoi(os.Getenv("CORRAL_TEST_HOG_MB"))
		for range mb {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
	}()
	id := fmt.Sprintf("%d %s %s\n", os.Getpid(), slot, os.Getenv("CORRAL_GENERATION"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(id))
	})}
	if err := httpworker.Serve(context.Background(), srv, httpworker.Options{Grace: time.Second}); err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return 1
	}
	runtime.KeepAlive(hoard)
	return 0
}

// hogPool starts n hog workers with max_memory 64 MiB, whose slots take
// 128 MiB once the test opens their gates.
func hogPool(t *testing.T, n int, env ...string) (*harness, string) {
	gate := filepath.Join(t.TempDir(), "gate")
	for i := range n {
		testenv.Gate(t, gate+strconv.Itoa(i))
	}
	spec := testSpec(t, "hog", n, append(env, "CORRAL_TEST_GATE="+gate, "CORRAL_TEST_HOG_MB=128")...)
	spec.MaxMemory = 64 << 20
	return startPool(t, spec, func(o *Options) { o.SampleInterval = 200 * time.Millisecond }), gate
}

// A worker above max_memory is recycled through the rolling path, under
// load: its replacement starts in its slot and comes online, and only then
// is it stopped. No request fails; the other slot is not touched.
func TestRecycleAboveMaxMemory(t *testing.T) {
	h, gate := hogPool(t, 2)
	before := h.waitOnline(2)
	l := loadtest.Start(h.addr, 4, 4)
	testenv.OpenGate(t, gate+"0")
	st := h.waitFor("worker 0 recycled, and its old process gone", func(st Status) bool {
		return st.Recycles == 1 && len(st.Workers) == 2 && st.Online == 2
	})
	for range 20 {
		if _, err := h.get(); err != nil {
			t.Fatal(err)
		}
	}
	ok, failed, errs := l.Stop()
	t.Logf("recycle under load: %d requests ok, %d failed", ok, failed)
	if failed > 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed while worker 0 was recycled: %q", failed, ok+failed, errs)
	}
	old := map[int]int{}
	for _, w := range before.Workers {
		old[w.Slot] = w.PID
	}
	for _, w := range st.Workers {
		switch {
		case w.Slot == 0 && (w.PID == old[0] || w.Recycles != 1 || w.Generation != 1):
			t.Errorf("slot 0 after its recycle: %+v (was pid %d); want a new pid of generation 1, 1 recycle", w, old[0])
		case w.Slot == 1 && w.PID != old[1]:
			t.Errorf("slot 1 has pid %d, was %d: it was not above max_memory", w.PID, old[1])
		}
	}
	if !strings.Contains(st.Line, "1 recycled (max_memory)") {
		t.Errorf("status line %q does not count the recycle", st.Line)
	}
	var replacement int
	for _, w := range st.Workers {
		if w.Slot == 0 {
			replacement = w.PID
		}
	}
	log := h.log.String()
	above := strings.Index(log, fmt.Sprintf("worker 0 (pid %d, generation 1): memory ", old[0]))
	online := strings.Index(log, fmt.Sprintf("worker 0 (pid %d, generation 1): online after", replacement))
	stop := strings.Index(log, fmt.Sprintf("worker 0 (pid %d, generation 1): stopping (recycled: memory", old[0]))
	if above < 0 || online < above || stop < online {
		t.Errorf("want pid %d found above max_memory, then pid %d online, then pid %d stopped; log:\n%s", old[0], replacement, old[0], log)
	}
}

// A replacement that fails leaves the old worker serving, and the recycle
// is tried again later, not in a loop.
func TestRecycleFailureKeepsTheOld(t *testing.T) {
	h, gate := hogPool(t, 1, "CORRAL_TEST_ONCE="+t.TempDir())
	before := h.waitOnline(1)
	testenv.OpenGate(t, gate+"0")
	h.waitFor("a failed recycle", func(Status) bool { return strings.Contains(h.log.String(), "recycle failed") })
	st := h.waitFor("the old worker serving alone", func(st Status) bool { return len(st.Workers) == 1 && st.Online == 1 })
	if st.Workers[0].PID != before.Workers[0].PID || st.Recycles != 0 {
		t.Errorf("after a failed recycle: %+v; want pid %d serving, no recycle", st.Workers, before.Workers[0].PID)
	}
	if !strings.Contains(h.log.String(), "the old worker keeps serving; next try in 1s") {
		t.Errorf("the failed recycle does not say when it is tried again; log:\n%s", h.log)
	}
}

// No recycle starts during a reload: a worker found above max_memory while
// one runs is replaced by the reload.
func TestNoRecycleDuringReload(t *testing.T) {
	start := filepath.Join(t.TempDir(), "start")
	testenv.Gate(t, start+"0")
	testenv.Gate(t, start+"1")
	h, gate := hogPool(t, 2, "CORRAL_TEST_START_GATE="+start)
	h.waitOnline(2)
	done := make(chan ReloadResult, 1)
	go func() { done <- h.pool.Reload(context.Background()) }()
	h.waitFor("the reload's first candidate", func(st Status) bool { return st.State == "reloading" && len(st.Workers) == 3 })
	testenv.OpenGate(t, gate+"0")
	h.waitFor("worker 0 found above max_memory", func(Status) bool { return strings.Contains(h.log.String(), "above max_memory") })
	testenv.OpenGate(t, start+"0")
	testenv.OpenGate(t, start+"1")
	if r := <-done; !r.OK {
		t.Fatalf("reload: %s", r.Message)
	}
	st := h.settle(2)
	for _, w := range st.Workers {
		if w.Generation != 2 {
			t.Errorf("after the reload: %+v, want generation 2", w)
		}
	}
	if st.Recycles != 0 || strings.Contains(h.log.String(), "recycling: its replacement") {
		t.Errorf("a recycle ran during the reload (%d recycles); log:\n%s", st.Recycles, h.log)
	}
}
