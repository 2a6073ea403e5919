package notify

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Message
		wantErr error // nil: valid
	}{
		{name: "ready", in: "READY=1", want: Message{Ready: true}},
		{name: "ready with newline", in: "READY=1\n", want: Message{Ready: true}},
		{name: "ready 0", in: "READY=0", want: Message{}},
		{name: "ready other value", in: "READY=yes", want: Message{}},
		{name: "online", in: "online", want: Message{Ready: true}},
		{name: "online newline", in: "online\n", want: Message{Ready: true}},
		{
			name: "multi-line",
			in:   "READY=1\nSTATUS=serving 4 workers\nMAINPID=42\n",
			want: Message{Ready: true, Status: "serving 4 workers", HasStatus: true},
		},
		{
			name: "all flags",
			in:   "STOPPING=1\nWATCHDOG=1\nRELOADING=1\nERRNO=5",
			want: Message{Stopping: true, Watchdog: true, Reloading: true, Errno: 5},
		},
		{name: "status with =", in: "STATUS=a=b=c", want: Message{Status: "a=b=c", HasStatus: true}},
		{name: "empty status", in: "STATUS=", want: Message{HasStatus: true}},
		{name: "last status wins", in: "STATUS=one\nSTATUS=two", want: Message{Status: "two", HasStatus: true}},
		{name: "status utf-8", in: "STATUS=bereit ✓", want: Message{Status: "bereit ✓", HasStatus: true}},
		{name: "empty lines", in: "\n\nREADY=1\n\n", want: Message{Ready: true}},
		{name: "CRLF", in: "READY=1\r\nSTATUS=up\r\n", want: Message{Ready: true, Status: "up", HasStatus: true}},
		{name: "CR alone", in: "STATUS=up\rREADY=1", want: Message{Ready: true, Status: "up", HasStatus: true}},
		{name: "unknown keys only", in: "MAINPID=42\nX_FOO=bar", want: Message{}},
		{name: "empty", in: "", want: Message{}},
		{name: "errno negative", in: "ERRNO=-1", want: Message{}},
		{name: "errno not a number", in: "ERRNO=EIO", want: Message{}},
		{name: "max size", in: "STATUS=" + strings.Repeat("x", maxPayload-7), want: Message{Status: strings.Repeat("x", maxPayload-7), HasStatus: true}},

		{name: "NUL byte", in: "READY=1\x00", wantErr: errNUL},
		{name: "bad UTF-8", in: "STATUS=\xff\xfe", wantErr: errNotUTF8},
		{name: "no =", in: "READY=1\nhello", wantErr: errMalformed},
		{name: "lowercase key", in: "ready=1", wantErr: errMalformed},
		{name: "empty key", in: "=1", wantErr: errMalformed},
		{name: "space in key", in: "READY =1", wantErr: errMalformed},
		{name: "CR in key", in: "READY\r=1", wantErr: errMalformed},
		{name: "online with more", in: "online\nREADY=1", wantErr: errMalformed},
		{name: "online twice newline", in: "online\n\n", wantErr: errMalformed},
		{name: "oversize", in: "STATUS=" + strings.Repeat("x", maxPayload-6), wantErr: errTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				if !reflect.DeepEqual(got, Message{}) {
					t.Errorf("Parse(%q) = %+v with error, want zero Message", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParse checks Parse on any payload: no panic; an error leaves the
// Message zero; an accepted payload passes checkValid, means what it means
// to systemd (checkSystemd) and survives a round trip. The seed corpus,
// testdata/fuzz/FuzzParse, holds what sd_notify clients send (systemd-notify,
// go-systemd, Puma, gunicorn, uWSGI, PM2's word) and malformed payloads.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"READY=1", "online", "online\n", "READY=1\nSTATUS=a=b\n", "STOPPING=1\nERRNO=12",
		"WATCHDOG=1\nRELOADING=1\nMONOTONIC_USEC=1", "=1", "ready=1", "\x00", "\xff",
		"STATUS=\nSTATUS=x", "ERRNO=+3", "ERRNO=99999999999999999999", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !reflect.DeepEqual(m, Message{}) {
				t.Fatalf("Parse(%q) = %+v with error %v, want zero Message", b, m, err)
			}
			return
		}
		checkValid(t, b, m)
		checkSystemd(t, b, m)
		again, err := Parse(encode(m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %+v: got %+v, %v", m, again, err)
		}
	})
}

// checkValid checks what must hold of a payload that Parse accepted.
func checkValid(t *testing.T, b []byte, m Message) {
	t.Helper()
	if len(b) > maxPayload || bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		t.Fatalf("Parse accepted %q", b)
	}
	if m.PID != 0 || m.UID != 0 || m.GID != 0 || m.Errno < 0 {
		t.Fatalf("Parse(%q) = %+v: credentials set or errno negative", b, m)
	}
	if strings.ContainsAny(m.Status, "\n\r") || !m.HasStatus && m.Status != "" {
		t.Fatalf("Parse(%q): bad status %q", b, m.Status)
	}
}

// checkSystemd checks that an accepted payload means to corral what it means
// to systemd, whose manager splits a datagram into tags at every '\n' and
// '\r' (strv_split_newlines) and looks for READY=1, STOPPING=1, WATCHDOG=1
// and RELOADING=1 among them. Of several STATUS= tags corral keeps the last
// (systemd the first); "online" is corral's own word.
func checkSystemd(t *testing.T, b []byte, m Message) {
	t.Helper()
	if s := string(b); s == "online" || s == "online\n" {
		return
	}
	var want Message
	for _, tag := range strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' || r == '\r' }) {
		switch tag {
		case "READY=1":
			want.Ready = true
		case "STOPPING=1":
			want.Stopping = true
		case "WATCHDOG=1":
			want.Watchdog = true
		case "RELOADING=1":
			want.Reloading = true
		}
		if v, ok := strings.CutPrefix(tag, "STATUS="); ok {
			want.Status, want.HasStatus = v, true
		}
	}
	if m.Ready != want.Ready || m.Stopping != want.Stopping || m.Watchdog != want.Watchdog ||
		m.Reloading != want.Reloading || m.HasStatus != want.HasStatus || m.Status != want.Status {
		t.Fatalf("Parse(%q) = %+v; systemd reads it as %+v", b, m, want)
	}
}

// encode writes m back as a notify payload that Parse should read as m.
func encode(m Message) []byte {
	var lines []string
	for _, f := range []struct {
		set  bool
		line string
	}{
		{m.Ready, "READY=1"}, {m.Stopping, "STOPPING=1"},
		{m.Watchdog, "WATCHDOG=1"}, {m.Reloading, "RELOADING=1"},
		{m.Errno != 0, "ERRNO=" + strconv.Itoa(m.Errno)},
		{m.HasStatus, "STATUS=" + m.Status},
	} {
		if f.set {
			lines = append(lines, f.line)
		}
	}
	return []byte(strings.Join(lines, "\n"))
}
