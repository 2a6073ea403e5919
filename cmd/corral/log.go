package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// logger writes one line per event to stderr. When stderr is the journal,
// lines carry sd-daemon priority prefixes (<6> info, <4> warning) so that
// journald files them right, and no timestamp, which journald adds.
type logger struct {
	mu      sync.Mutex
	w       io.Writer
	journal bool
}

func newLogger(w io.Writer) *logger {
	ok, _ := journal.StderrIsJournalStream()
	return &logger{w: w, journal: ok}
}

func (l *logger) infof(format string, args ...any) { l.write("<6>", format, args) }
func (l *logger) warnf(format string, args ...any) { l.write("<4>", format, args) }

func (l *logger) write(prio, format string, args []any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.journal {
		fmt.Fprintf(l.w, "%s%s\n", prio, msg)
		return
	}
	level := ""
	if prio == "<4>" {
		level = "warning: "
	}
	fmt.Fprintf(l.w, "%s corral: %s%s\n", time.Now().Format("15:04:05.000"), level, msg)
}
