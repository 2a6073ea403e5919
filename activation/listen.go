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
	// Network is the kind of socket, named as Go's net package names it:
	// "tcp" (a listening stream socket, systemd's ListenStream=), "udp"
	// (ListenDatagram=), "unix" (a listening unix stream socket),
	// "unixgram" (a unix datagram socket) or "unixpacket" (a listening
	// unix SOCK_SEQPACKET socket, ListenSequentialPacket=).
	Network string
	// Address is HOST:PORT for "tcp" and "udp", an absolute path for the
	// unix networks.
	Address string
}

// display returns the address as it appears in logs and errors, in the
// form ParseListen reads: a TCP address bare (unless its host is named like
// a network: "tcp:udp:80"), every other with its network first
// ("udp:127.0.0.1:5353", "unix:/run/app.sock").
func (s ListenSpec) display() string {
	if _, rest := splitNetwork(s.Address); s.Network == "tcp" && rest == s.Address {
		return s.Address
	}
	return s.Network + ":" + s.Address
}

// isUnix reports whether the spec names a unix socket, by path.
func (s ListenSpec) isUnix() bool { return pathNetworks[s.Network] }

// isDatagram reports whether the spec names a datagram socket.
func (s ListenSpec) isDatagram() bool { return s.Network == "udp" || s.Network == "unixgram" }

// pathNetworks are the networks whose address is a unix socket path.
var pathNetworks = map[string]bool{"unix": true, "unixgram": true, "unixpacket": true}

const (
	// maxNameLen is systemd's FDNAME_MAX.
	maxNameLen = 255
	// addrForms says what a valid address looks like, for error messages.
	addrForms = "want HOST:PORT, :PORT, [IPV6]:PORT, udp:HOST:PORT, unix:/PATH, unixgram:/PATH or unixpacket:/PATH (for example 127.0.0.1:8080)"
	nameForms = "want NAME=ADDR with a NAME of 1 to 255 printable ASCII characters and no ':' or '='"
)

// maxUnixPath is the longest path a sockaddr_un holds, without its NUL.
var maxUnixPath = len(unix.RawSockaddrUnix{}.Path) - 1

// ParseListen parses a --listen value "[NAME=]ADDR", where ADDR is one of
//
//	HOST:PORT, :PORT, [IPV6]:PORT   a TCP socket (tcp:HOST:PORT says so explicitly)
//	udp:HOST:PORT, udp::PORT        a UDP socket
//	unix:/PATH                      a unix stream socket
//	unixgram:/PATH                  a unix datagram socket
//	unixpacket:/PATH                a unix SOCK_SEQPACKET socket
//
// It returns the spec with Network "tcp" or "udp" and Address HOST:PORT
// (IPv6 hosts in brackets), or Network "unix", "unixgram" or "unixpacket"
// and Address the absolute path; Name is NAME, or empty when the value has
// none. A PORT must be a number from 0 to 65535 and a HOST an IP address or
// a host name; it is not resolved here. NAME follows the sd_listen_fds
// rules: 1 to 255 printable ASCII characters without ':' (nor '=', which
// separates it from ADDR). A value starting with a unix network has no
// NAME, so a unix path may contain '=', but no NUL byte. It returns an
// error that quotes s and says what a valid value looks like when s breaks
// any of these rules.
func ParseListen(s string) (ListenSpec, error) {
	spec, err := parseListen(s)
	if err != nil {
		return ListenSpec{}, fmt.Errorf("--listen %q: %w", s, err)
	}
	return spec, nil
}

func parseListen(s string) (ListenSpec, error) {
	name, addr, err := splitName(s)
	if err != nil {
		return ListenSpec{}, err
	}
	network, rest := splitNetwork(addr)
	spec := ListenSpec{Name: name, Network: network, Address: rest}
	if spec.isUnix() {
		return spec, checkUnixPath(network, rest)
	}
	spec.Address, err = parseHostPort(network, rest)
	return spec, err
}

// splitNetwork splits "NETWORK:REST" for the networks ParseListen knows;
// anything else is a TCP address.
func splitNetwork(addr string) (network, rest string) {
	for _, n := range []string{"tcp", "udp", "unix", "unixgram", "unixpacket"} {
		if rest, ok := strings.CutPrefix(addr, n+":"); ok {
			return n, rest
		}
	}
	return "tcp", addr
}

// hasPathPrefix reports whether s starts with a unix network, whose path
// may hold '='.
func hasPathPrefix(s string) bool {
	network, _ := splitNetwork(s)
	return pathNetworks[network]
}

// splitName splits "[NAME=]ADDR" and checks NAME.
func splitName(s string) (name, addr string, err error) {
	if hasPathPrefix(s) {
		return "", s, nil
	}
	name, addr, found := strings.Cut(s, "=")
	if !found {
		return "", s, nil
	}
	if !hasPathPrefix(addr) && strings.Contains(addr, "=") {
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

// checkUnixPath reports why path cannot name a unix socket of network, or
// nil.
func checkUnixPath(network, path string) error {
	want := fmt.Sprintf("want %s:/PATH (for example %s:/run/app.sock)", network, network)
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

// parseHostPort checks HOST:PORT of network "tcp" or "udp" and returns it
// in canonical form.
func parseHostPort(network, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, numErr := strconv.ParseUint(addr, 10, 16); numErr == nil {
			return "", fmt.Errorf("%s; did you mean %q?", addrForms, (ListenSpec{Network: network, Address: ":" + addr}).display())
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
