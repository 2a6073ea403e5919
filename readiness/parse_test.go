package readiness

import "testing"

func TestParseRegistration(t *testing.T) {
	tests := []struct {
		line string
		want registration
		ok   bool
	}{
		{
			line: "tfd:        5 events: 8000201d data: 3fdfc3cb6f000002  pos:0 ino:27d09c sdev:9",
			want: registration{tfd: 5, events: 0x8000201d, ino: 0x27d09c, dev: 9, hasIno: true},
			ok:   true,
		},
		{
			line: "tfd:        3 events:       19 data:                3",
			want: registration{tfd: 3, events: 0x19},
			ok:   true,
		},
		{line: "ino:\t1038"},
		{line: "flags:\t02000002"},
	}
	for _, tt := range tests {
		got, ok := parseRegistration([]byte(tt.line))
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseRegistration(%q) = %+v, %t; want %+v, %t", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseSyscall(t *testing.T) {
	tests := []struct {
		line string
		want syscallState
		ok   bool
	}{
		{
			line: "232 0x4 0x7f29b11a4760 0x1 0x7530 0x0 0x0 0x7ffdba26ab28 0x7f29b1326ef3\n",
			want: syscallState{nr: 232, args: [6]uint64{4, 0x7f29b11a4760, 1, 0x7530, 0, 0}},
			ok:   true,
		},
		{line: "running\n"},
		{line: "-1 0x7ffdba26ab28 0x7f29b1326ef3\n"},
		{line: "232 0x4\n"},
	}
	for _, tt := range tests {
		got, ok := parseSyscall([]byte(tt.line))
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseSyscall(%q) = %+v, %t; want %+v, %t", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBracketed(t *testing.T) {
	tests := []struct {
		link string
		want uint64
		ok   bool
	}{
		{link: "socket:[4567]", want: 4567, ok: true},
		{link: "socket:[]"},
		{link: "pipe:[4567]"},
		{link: "anon_inode:[eventpoll]"},
		{link: "socket:[45x]"},
	}
	for _, tt := range tests {
		got, ok := bracketed([]byte(tt.link), "socket:[")
		if ok != tt.ok || got != tt.want {
			t.Errorf("bracketed(%q) = %d, %t; want %d, %t", tt.link, got, ok, tt.want, tt.ok)
		}
	}
}
