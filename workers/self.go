package workers

import (
	"os"
	"runtime"
	"runtime/metrics"

	"github.com/corraldev/corral/internal/proc"
)

// Self is corral's own process, as `corral status --json` shows it: the
// figures that must stay flat however long corral runs and however many
// reloads it does. Each is read when the status is asked for, from /proc
// and the Go runtime, outside the pool's goroutine; a figure that cannot be
// read is 0.
type Self struct {
	PID        int   `json:"pid"`
	FDs        int   `json:"fds"`        // open file descriptors
	Threads    int   `json:"threads"`    // OS threads
	Goroutines int   `json:"goroutines"` // live goroutines
	RSSBytes   int64 `json:"rss_bytes"`  // resident memory (VmRSS)
	// HeapBytes is the Go heap that the last garbage collection found
	// live: what a leak makes grow. RSS also holds the garbage made since,
	// up to the collector's goal (at least 4 MiB), so it climbs by a few
	// MiB after start while this stays flat.
	HeapBytes int64 `json:"heap_live_bytes"`
}

// readSelf reads this process's figures.
func readSelf() Self {
	s := Self{PID: os.Getpid(), Goroutines: runtime.NumGoroutine()}
	if st, err := proc.ReadStat(s.PID); err == nil {
		s.Threads = st.Threads
	}
	if n, err := proc.FDs(s.PID); err == nil {
		s.FDs = n
	}
	if rss, err := proc.RSS(s.PID); err == nil {
		s.RSSBytes = rss
	}
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	if metrics.Read(m); m[0].Value.Kind() == metrics.KindUint64 {
		s.HeapBytes = int64(m[0].Value.Uint64())
	}
	return s
}
