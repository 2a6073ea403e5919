package activation

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ListenSpec is one parsed --listen value.
type ListenSpec struct {
	// Name is the LISTEN_FDNAMES entry workers see; empty means none was
	// given, which Open turns into "unknown".
	Name string
	// Network is "tcp" or "unix".
	Network string
	// Address is HOST:PORT for "tcp" and an absolute path for "unix".
	Address string
}

// display returns the address as it appears in logs and errors.
func (s ListenSpec) display() string {
	if s.Network == "unix" {
		return "unix:" + s.Address
	}
	return s.Address
}

const (
	unixPrefix = "unix:"
	// maxNameLen is systemd's FDNAME_MAX.
	maxNameLen = 255
	// addrForms says what a valid address looks like, for error messages.
	addrForms = "want HOST:PORT, :PORT, [IPV6]:PORT or unix:/PATH (for example 127.0.0.1:8080)"
	nameForms = "want NAME=ADDR with a NAME of 1 to 255 printable ASCII characters and no ':' or '='"
)

// maxUnixPath is the longest path a sockaddr_un holds, without its NUL.
var maxUnixPath = len(unix.RawSockaddrUnix{}.Path) - 1

// ParseListen parses a --listen value "[NAME=]ADDR", where ADDR is
// HOST:PORT, :PORT, [IPV6]:PORT or unix:/ABSOLUTE/PATH.
//
// It returns the spec with Network "tcp" and Address HOST:PORT (IPv6 hosts
// in brackets), or Network "unix" and Address the path; Name is NAME, or
// empty when the value has none. A PORT must be a number from 0 to 65535 and
// a HOST an IP address or a host name; it is not resolved here. NAME follows
// the sd_listen_fds rules: 1 to 255 printable ASCII characters without ':'
// (nor '=', which separates it from ADDR). A value starting with "unix:" has
// no NAME, so a unix path may contain '=', but no NUL byte. It returns an error that quotes s
// and says what a valid value looks like when s breaks any of these rules.
func ParseListen(s string) (ListenSpec, error) {
	name, addr, err := splitName(s)
	if err != nil {
		return ListenSpec{}, fmt.Errorf("--listen %q: %w", s, err)
	}
	spec := ListenSpec{Name: name, Network: "tcp"}
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		spec.Network, spec.Address, err = "unix", path, checkUnixPath(path)
	} else {
		spec.Address, err = parseTCP(addr)
	}
	if err != nil {
		return ListenSpec{}, fmt.Errorf("--listen %q: %w", s, err)
	}
	return spec, nil
}

// splitName splits "[NAME=]ADDR" and checks NAME.
func splitName(s string) (name, addr string, err error) {
	if strings.HasPrefix(s, unixPrefix) {
		return "", s, nil
	}
	name, addr, found := strings.Cut(s, "=")
	if !found {
		return "", s, nil
	}
	if !strings.HasPrefix(addr, unixPrefix) && strings.Contains(addr, "=") {
		return "", "", errors.New("more than one '='; " + nameForms)
	}
	return name, addr, checkName(name)
}

// checkName reports why name is not a valid LISTEN_FDNAMES entry, or nil.
func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("NAME is %d characters long; %s", len(name), nameForms)
	}
	for _, c := range []byte(name) {
		if c < ' ' || c > '~' || c == ':' {
			return fmt.Errorf("NAME %q contains %q; %s", name, c, nameForms)
		}
	}
	return nil
}

// checkUnixPath reports why path cannot name a unix socket, or nil.
func checkUnixPath(path string) error {
	const want = "want unix:/PATH (for example unix:/run/app.sock)"
	switch {
	case path == "":
		return errors.New("empty unix socket path; " + want)
	case !filepath.IsAbs(path):
		return fmt.Errorf("unix socket path %q is not absolute; %s", path, want)
	case strings.IndexByte(path, 0) >= 0:
		return fmt.Errorf("unix socket path %q contains a NUL byte, where the kernel would end it; %s", path, want)
	case len(path) > maxUnixPath:
		return fmt.Errorf("unix socket path is %d bytes long; the kernel allows at most %d", len(path), maxUnixPath)
	}
	return nil
}

// parseTCP checks HOST:PORT and returns it in canonical form.
func parseTCP(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, numErr := strconv.ParseUint(addr, 10, 16); numErr == nil {
			return "", fmt.Errorf("%s; did you mean \":%s\"?", addrForms, addr)
		}
		return "", errors.New(addrForms)
	}
	if err := checkPort(port); err != nil {
		return "", err
	}
	if err := checkHost(host, strings.HasPrefix(addr, "[")); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

// checkPort reports why port is not a number from 0 to 65535, or nil.
func checkPort(port string) error {
	const want = "want 0..65535 (for example :8080)"
	if port == "" {
		return errors.New("missing port; " + want)
	}
	if strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("port %q is not a number; %s", port, want)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %s is out of range; %s", port, want)
	}
	return nil
}

// checkHost reports why host is neither empty, an IP address nor a
// syntactically valid host name, or nil. A host given in brackets must be
// an IPv6 address.
func checkHost(host string, bracketed bool) error {
	ip, err := netip.ParseAddr(host)
	switch {
	case bracketed || strings.ContainsAny(host, ":%"):
		if err != nil || !ip.Is6() {
			return fmt.Errorf("host %q is not a valid IPv6 address; %s", host, addrForms)
		}
	case host == "" || err == nil:
	case len(host) > 253 || strings.Trim(host, hostChars) != "":
		return fmt.Errorf("host %q is not an IP address or host name; %s", host, addrForms)
	}
	return nil
}

const hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
