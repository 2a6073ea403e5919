package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Scope says which systemd manager runs the apps.
type Scope int

const (
	// System is the system manager (systemctl): root's, apps under
	// /etc/corral.
	System Scope = iota + 1
	// User is the calling user's own manager (systemctl --user): apps
	// under ~/.config/corral.
	User
)

func (s Scope) String() string {
	if s == User {
		return "user"
	}
	return "system"
}

// DefaultScope returns System for root and User for everyone else.
func DefaultScope() Scope {
	if os.Geteuid() == 0 {
		return System
	}
	return User
}

// Paths are where a manager's apps live.
type Paths struct {
	Config  string // the apps' configs, NAME.toml: /etc/corral, ~/.config/corral
	Units   string // unit files and drop-ins: /etc/systemd/system, ~/.config/systemd/user
	Records string // what start wrote, NAME.json: /var/lib/corral-apps, ~/.local/state/corral-apps
	Runtime string // the manager's runtime directory, %t: /run, $XDG_RUNTIME_DIR
	Bus     string // the manager's private D-Bus socket
}

// ScopePaths returns the paths of scope for this process: the user's
// come from $HOME and the XDG variables, with their documented defaults,
// and $XDG_RUNTIME_DIR defaults to /run/user/UID, as after `su`.
func ScopePaths(scope Scope) (Paths, error) {
	if scope == System {
		return Paths{
			Config:  "/etc/corral",
			Units:   "/etc/systemd/system",
			Records: "/var/lib/corral-apps",
			Runtime: "/run",
			Bus:     "/run/systemd/private",
		}, nil
	}
	home := os.Getenv("HOME")
	if home == "" {
		u, err := user.Current()
		if err != nil {
			return Paths{}, fmt.Errorf("find your home directory: set $HOME: %w", err)
		}
		home = u.HomeDir
	}
	xdg := func(name, def string) string {
		if v := os.Getenv(name); filepath.IsAbs(v) {
			return v
		}
		return def
	}
	config := xdg("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	runtime := xdg("XDG_RUNTIME_DIR", "/run/user/"+strconv.Itoa(os.Geteuid()))
	return Paths{
		Config:  filepath.Join(config, "corral"),
		Units:   filepath.Join(config, "systemd", "user"),
		Records: filepath.Join(xdg("XDG_STATE_HOME", filepath.Join(home, ".local", "state")), "corral-apps"),
		Runtime: runtime,
		Bus:     filepath.Join(runtime, "systemd", "private"),
	}, nil
}

// Manager is a connection to one systemd manager. Close it when done.
type Manager struct {
	scope Scope
	paths Paths
	conn  *sdbus.Conn
}

// ErrNoSystemd means the manager's private socket did not answer: no
// systemd runs here, or not for this user.
var ErrNoSystemd = errors.New("no systemd manager answers")

// ErrNotRoot means a user other than root asked for the system manager.
var ErrNotRoot = errors.New("only root may run apps under the system manager")

// Connect connects to the manager of scope. It returns an error wrapping
// ErrNotRoot for the system manager when not root, and ErrNoSystemd when
// the manager's socket is missing or refuses the connection.
func Connect(ctx context.Context, scope Scope) (*Manager, error) {
	if scope == System && os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: run it with sudo, or give --user for your own manager (systemctl --user)", ErrNotRoot)
	}
	paths, err := ScopePaths(scope)
	if err != nil {
		return nil, err
	}
	conn, err := sdbus.NewConnection(func() (*dbus.Conn, error) { return dialPrivate(ctx, paths.Bus) })
	if err != nil {
		return nil, noSystemd(scope, paths.Bus, err)
	}
	return &Manager{scope: scope, paths: paths, conn: conn}, nil
}

// dialPrivate opens a D-Bus connection to a systemd manager's private
// socket, which speaks D-Bus peer to peer: EXTERNAL authentication by
// UID, and no Hello, since there is no bus daemon.
func dialPrivate(ctx context.Context, path string) (*dbus.Conn, error) {
	conn, err := dbus.Dial("unix:path="+escapeAddress(path), dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// escapeAddress escapes a value of a D-Bus address as the specification
// says: every byte but [-0-9A-Za-z_/.\\*] as %XX.
func escapeAddress(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_/.\\*", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02x", c)
	}
	return b.String()
}

func noSystemd(scope Scope, bus string, err error) error {
	if scope == System {
		return fmt.Errorf("%w: the system manager's socket %s: %v (systemd is not PID 1 here?); without systemd, use corral run", ErrNoSystemd, bus, err)
	}
	return fmt.Errorf("%w: your user manager's socket %s: %v (log in through a session that starts systemd --user, or have root run loginctl enable-linger %s); without systemd, use corral run",
		ErrNoSystemd, bus, err, currentUser())
}

// currentUser returns the calling user's name, or its UID.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

// Close closes the connection.
func (m *Manager) Close() { m.conn.Close() }

// Scope returns the manager's scope.
func (m *Manager) Scope() Scope { return m.scope }

// Paths returns where the manager's apps live.
func (m *Manager) Paths() Paths { return m.paths }
