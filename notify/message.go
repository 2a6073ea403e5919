package notify

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxPayload is the longest datagram accepted, in bytes. systemd reads into
// a buffer of NOTIFY_BUFFER_MAX (PIPE_BUF, 4096) bytes and drops anything the
// kernel had to truncate to fit it.
const maxPayload = 4096

// Reasons a datagram is refused. They are matched with errors.Is in tests
// and appear in drop log lines.
var (
	errTooLarge  = errors.New("datagram longer than 4096 bytes")
	errNUL       = errors.New("datagram contains a NUL byte")
	errNotUTF8   = errors.New("datagram is not valid UTF-8")
	errMalformed = errors.New("line is not KEY=VALUE")
)

// Message is one datagram received on corral's notify socket.
type Message struct {
	PID, UID, GID int    // from SCM_CREDENTIALS (kernel-checked)
	Ready         bool   // READY=1, or the bare word "online" (the PM2 word) as the whole datagram (trailing newline allowed)
	Stopping      bool   // STOPPING=1
	Watchdog      bool   // WATCHDOG=1
	Reloading     bool   // RELOADING=1
	Status        string // value of STATUS= (last one wins)
	HasStatus     bool   // a STATUS= line was present (Status may be empty)
	Errno         int    // ERRNO= if present and a valid non-negative int, else 0

	// Ancestors are the sender's parent, grandparent and so on (not PID
	// 1), read when the datagram arrived, while the sender still ran: a
	// worker's child that notifies (systemd-notify) may be gone by the
	// time the message is acted on.
	Ancestors []int
}

// Parse parses the payload of one datagram; PID, UID and GID are left zero.
// It is exported for tests and fuzzing.
//
// The payload is a sequence of KEY=VALUE lines, where KEY is one or more of
// A-Z, 0-9 and '_' and VALUE is everything after the first '='. Lines end at
// '\n' or '\r' (so "READY=1\r\n" is READY=1); empty lines are skipped and
// unknown keys are ignored; all three as systemd does.
// The bare word "online", optionally followed by one newline, is accepted as
// the whole payload and means Ready.
//
// Parse returns one of:
//   - (m, nil): the payload is valid; m may have no flag set and no status
//     if it carried only unknown keys or was empty.
//   - (Message{}, err): the payload is longer than 4096 bytes, contains a
//     NUL byte, is not valid UTF-8, or has a line that is not KEY=VALUE.
func Parse(b []byte) (Message, error) {
	if err := checkPayload(b); err != nil {
		return Message{}, fmt.Errorf("parse notify message: %w", err)
	}
	if s := string(b); s == "online" || s == "online\n" {
		return Message{Ready: true}, nil
	}
	var m Message
	for i, line := range bytes.Split(b, []byte("\n")) {
		for _, tag := range bytes.Split(line, []byte("\r")) {
			if len(tag) == 0 {
				continue
			}
			key, value, ok := splitAssignment(tag)
			if !ok {
				return Message{}, fmt.Errorf("parse notify message: line %d: %w: %s", i+1, errMalformed, quote(tag))
			}
			m.apply(key, value)
		}
	}
	return m, nil
}

// checkPayload reports why b cannot be a notify message, or nil if it can.
func checkPayload(b []byte) error {
	switch {
	case len(b) > maxPayload:
		return errTooLarge
	case bytes.IndexByte(b, 0) >= 0:
		return errNUL
	case !utf8.Valid(b):
		return errNotUTF8
	}
	return nil
}

// splitAssignment splits line at its first '=' and reports whether the
// part before it is a valid key.
func splitAssignment(line []byte) (key, value string, ok bool) {
	k, v, found := bytes.Cut(line, []byte("="))
	if !found || !validKey(k) {
		return "", "", false
	}
	return string(k), string(v), true
}

// validKey reports whether k is non-empty and made only of A-Z, 0-9 and '_'.
func validKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// apply records the effect of one KEY=VALUE assignment; unknown keys have
// none.
func (m *Message) apply(key, value string) {
	switch key {
	case "READY":
		m.Ready = m.Ready || value == "1"
	case "STOPPING":
		m.Stopping = m.Stopping || value == "1"
	case "WATCHDOG":
		m.Watchdog = m.Watchdog || value == "1"
	case "RELOADING":
		m.Reloading = m.Reloading || value == "1"
	case "STATUS":
		m.Status, m.HasStatus = value, true
	case "ERRNO":
		m.Errno = parseErrno(value)
	}
}

// parseErrno returns value as a non-negative int, or 0 if it is not one.
func parseErrno(value string) int {
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// quote returns line quoted for a log message, cut to a readable length.
func quote(line []byte) string {
	const limit = 40
	if len(line) > limit {
		return strconv.Quote(string(line[:limit])) + "..."
	}
	return strconv.Quote(string(line))
}
