package activation

import (
	"strings"
	"testing"
)

func TestParseListen(t *testing.T) {
	long := strings.Repeat("n", 255)
	tests := []struct {
		in      string
		want    ListenSpec
		wantErr string // substring of the error; empty means success
	}{
		{in: "127.0.0.1:8080", want: ListenSpec{Network: "tcp", Address: "127.0.0.1:8080"}},
		{in: ":8080", want: ListenSpec{Network: "tcp", Address: ":8080"}},
		{in: "[::1]:9000", want: ListenSpec{Network: "tcp", Address: "[::1]:9000"}},
		{in: "[fe80::1%lo]:9000", want: ListenSpec{Network: "tcp", Address: "[fe80::1%lo]:9000"}},
		{in: "http=:8080", want: ListenSpec{Name: "http", Network: "tcp", Address: ":8080"}},
		{in: "admin=unix:/run/a.sock", want: ListenSpec{Name: "admin", Network: "unix", Address: "/run/a.sock"}},
		{in: "unix:/run/a=b.sock", want: ListenSpec{Network: "unix", Address: "/run/a=b.sock"}},
		{in: "localhost:0", want: ListenSpec{Network: "tcp", Address: "localhost:0"}},
		{in: "web.socket=api.example.com:65535", want: ListenSpec{Name: "web.socket", Network: "tcp", Address: "api.example.com:65535"}},
		{in: long + "=:1", want: ListenSpec{Name: long, Network: "tcp", Address: ":1"}},
		{in: "tcp:127.0.0.1:8080", want: ListenSpec{Network: "tcp", Address: "127.0.0.1:8080"}},
		{in: "web=tcp::80", want: ListenSpec{Name: "web", Network: "tcp", Address: ":80"}},
		{in: "udp:127.0.0.1:5353", want: ListenSpec{Network: "udp", Address: "127.0.0.1:5353"}},
		{in: "udp::53", want: ListenSpec{Network: "udp", Address: ":53"}},
		{in: "dns=udp:[::1]:53", want: ListenSpec{Name: "dns", Network: "udp", Address: "[::1]:53"}},
		{in: "stats=udp:localhost:8125", want: ListenSpec{Name: "stats", Network: "udp", Address: "localhost:8125"}},
		{in: "unixgram:/run/log.sock", want: ListenSpec{Network: "unixgram", Address: "/run/log.sock"}},
		{in: "log=unixgram:/run/a=b.sock", want: ListenSpec{Name: "log", Network: "unixgram", Address: "/run/a=b.sock"}},
		{in: "unixpacket:/run/seq.sock", want: ListenSpec{Network: "unixpacket", Address: "/run/seq.sock"}},
		{in: "unixpacket:/run/a=b", want: ListenSpec{Network: "unixpacket", Address: "/run/a=b"}},

		{in: "", wantErr: "want HOST:PORT, :PORT, [IPV6]:PORT, udp:HOST:PORT, unix:/PATH, unixgram:/PATH or unixpacket:/PATH (for example 127.0.0.1:8080)"},
		{in: "8080", wantErr: `did you mean ":8080"?`},
		{in: ":99999", wantErr: "port 99999 is out of range; want 0..65535"},
		{in: ":http", wantErr: `port "http" is not a number`},
		{in: ":-1", wantErr: `port "-1" is not a number`},
		{in: "127.0.0.1:", wantErr: "missing port"},
		{in: "::1:8080", wantErr: "want HOST:PORT"},
		{in: "[::1:8080", wantErr: "want HOST:PORT"},
		{in: "[nope]:80", wantErr: `host "nope" is not a valid IPv6 address`},
		{in: "bad host:80", wantErr: `host "bad host" is not an IP address or host name`},
		{in: "unix:relative", wantErr: `unix socket path "relative" is not absolute`},
		{in: "unix:", wantErr: "empty unix socket path"},
		{in: "unix:/" + strings.Repeat("p", 120), wantErr: "at most 107"},
		{in: "a=b=c:1", wantErr: "more than one '='"},
		{in: "a:b=:80", wantErr: `NAME "a:b" contains ':'`},
		{in: "a\tb=:80", wantErr: `contains '\t'`},
		{in: "=:80", wantErr: "NAME is 0 characters long"},
		{in: long + "n=:80", wantErr: "NAME is 256 characters long"},
		{in: "http=", wantErr: "want HOST:PORT"},
		{in: "udp:5353", wantErr: `did you mean "udp::5353"?`},
		{in: "udp:", wantErr: "udp:HOST:PORT"},
		{in: "udp:[::1:53", wantErr: "udp:HOST:PORT"},
		{in: "udp::99999", wantErr: "port 99999 is out of range"},
		{in: "tcp:", wantErr: "want HOST:PORT"},
		{in: "udp6:[::1]:53", wantErr: "udp:HOST:PORT"},
		{in: "sctp:127.0.0.1:80", wantErr: "want HOST:PORT"},
		{in: "unixgram:run/log.sock", wantErr: `unix socket path "run/log.sock" is not absolute; want unixgram:/PATH`},
		{in: "unixpacket:", wantErr: "empty unix socket path; want unixpacket:/PATH"},
		{in: "dns=udp:a=b:53", wantErr: "more than one '='"},
	}
	for _, tt := range tests {
		got, err := ParseListen(tt.in)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseListen(%q) = %+v, %v; want %+v, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseListen(%q) = %+v, nil; want error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		prefix := `--listen "` + strings.ReplaceAll(tt.in, "\t", `\t`) + `": `
		if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("ParseListen(%q) error = %q; want prefix %q and %q", tt.in, err, prefix, tt.wantErr)
		}
	}
}
