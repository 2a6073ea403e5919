package activation

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseListen checks ParseListen on any --listen value: it never
// panics; an error quotes the value and is one line; an accepted value is a
// spec Open can bind as written, and its canonical form parses to the same
// spec. The seed corpus is testdata/fuzz/FuzzParseListen: the README's
// forms, other tools' bind syntaxes, and malformed values.
func FuzzParseListen(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseListen(s)
		if err != nil {
			msg := err.Error()
			if prefix := fmt.Sprintf("--listen %q: ", s); !strings.HasPrefix(msg, prefix) {
				t.Fatalf("ParseListen(%q) error %q does not start with %q", s, msg, prefix)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("ParseListen(%q) error %q is not one line", s, msg)
			}
			if spec != (ListenSpec{}) {
				t.Fatalf("ParseListen(%q) = %+v with an error", s, spec)
			}
			return
		}
		checkSpec(t, s, spec)
		canon := spec.display()
		if spec.Name != "" {
			canon = spec.Name + "=" + canon
		}
		if again, err := ParseListen(canon); err != nil || again != spec {
			t.Fatalf("ParseListen(%q) = %+v, but its canonical form %q parses to %+v, %v", s, spec, canon, again, err)
		}
	})
}

// checkSpec checks what must hold of a spec that ParseListen accepted.
func checkSpec(t *testing.T, s string, spec ListenSpec) {
	t.Helper()
	if spec.Name != "" && checkName(spec.Name) != nil {
		t.Fatalf("ParseListen(%q): accepted name %q: %v", s, spec.Name, checkName(spec.Name))
	}
	switch spec.Network {
	case "unix", "unixgram", "unixpacket":
		// The kernel ends a socket path at its first NUL byte: any other
		// path would bind a different file than the one the user named.
		if !filepath.IsAbs(spec.Address) || len(spec.Address) > maxUnixPath || strings.IndexByte(spec.Address, 0) >= 0 {
			t.Fatalf("ParseListen(%q): accepted unix path %q", s, spec.Address)
		}
	case "tcp", "udp":
		host, port, err := net.SplitHostPort(spec.Address)
		if err != nil {
			t.Fatalf("ParseListen(%q): accepted address %q: %v", s, spec.Address, err)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || strings.Trim(port, "0123456789") != "" {
			t.Fatalf("ParseListen(%q): accepted port %q (%d, %v)", s, port, n, err)
		}
		if _, err := netip.ParseAddr(host); err == nil || host == "" {
			// An IP literal resolves without DNS, as Open will resolve it.
			if _, err := net.ResolveTCPAddr("tcp", spec.Address); err != nil {
				t.Fatalf("ParseListen(%q): accepted %q, which does not resolve: %v", s, spec.Address, err)
			}
		} else if checkHost(host, false) != nil {
			t.Fatalf("ParseListen(%q): accepted host %q", s, host)
		}
	default:
		t.Fatalf("ParseListen(%q): network %q", s, spec.Network)
	}
}
