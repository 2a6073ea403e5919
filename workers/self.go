package workers

import (
	"os"
	"runtime"

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
	return s
}
