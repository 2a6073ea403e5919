package apps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// serviceProps returns a service's Unit and Service properties in one map.
func (m *Manager) serviceProps(ctx context.Context, service string) (props, error) {
	u, err := m.unitProps(ctx, service)
	if err != nil {
		return nil, err
	}
	if u.str("LoadState") != "loaded" {
		return u, nil
	}
	s, err := m.typeProps(ctx, service, "Service")
	if err != nil {
		return nil, err
	}
	for k, v := range s {
		u[k] = v
	}
	return u, nil
}

// checkTemplate fails unless the manager loaded the app's service from
// the template: the package, or `corral units`, installs it.
func (m *Manager) checkTemplate(template string, svc props) error {
	if svc.str("LoadState") == "loaded" {
		return nil
	}
	how := "install the corral package, or run corral units"
	if m.scope == User {
		how = "install the corral package (it ships /usr/lib/systemd/user/corral@.service), or run corral units --user"
	}
	if template != DefaultTemplate {
		how = fmt.Sprintf("write it with corral units --template %s", template)
		if m.scope == User {
			how += " --user"
		}
	}
	return badInput(fmt.Errorf("the %s manager has no unit %s@.service (%s): %s",
		m.scope, template, svc.str("LoadState"), how))
}

// hidden are the directories that ProtectHome= hides from a service.
var hidden = []string{"/home", "/root", "/run/user"}

// checkVisible fails when the service will not be able to read the app:
// a command, a script or the working directory that ProtectHome= hides,
// or that the dynamic user of DynamicUser= may not read.
func (m *Manager) checkVisible(s Spec, svc props) error {
	protect := svc.str("ProtectHome")
	dynamic := svc.boolean("DynamicUser")
	fix := fmt.Sprintf("move the app to a directory all may read, such as /srv/%s or /opt/%s, or let the service read it: "+
		"systemctl edit %s@.service, [Service] DynamicUser=no, User=YOURUSER, ProtectHome=read-only; "+
		"or run it under your own user manager: corral start --user", s.Name, s.Name, s.template())
	for _, path := range appPaths(s) {
		for _, h := range hidden {
			if protect != "" && protect != "no" && (path == h || strings.HasPrefix(path, h+"/")) {
				return badInput(fmt.Errorf("%s is under %s, which the service cannot see (ProtectHome=%s in %s@.service): %s",
					path, h, protect, s.template(), fix))
			}
		}
		if dynamic {
			if err := othersMayRead(path); err != nil {
				return badInput(fmt.Errorf("%w: the service runs as a user of its own (DynamicUser=yes): %s", err, fix))
			}
		}
	}
	return nil
}

// appPaths returns the paths the service must read: the program, any
// argument that names an existing file, and the working directory.
func appPaths(s Spec) []string {
	paths := []string{s.Config.Command[0]}
	for _, a := range s.Config.Command[1:] {
		p := a
		if !filepath.IsAbs(p) {
			p = filepath.Join(s.Config.WorkingDirectory, a)
		}
		if _, err := os.Stat(p); err == nil && !strings.HasPrefix(a, "-") {
			paths = append(paths, p)
		}
	}
	if s.Config.WorkingDirectory != "" {
		paths = append(paths, s.Config.WorkingDirectory)
	}
	return paths
}

// othersMayRead returns an error unless a user with no rights of its own
// may reach and read path: every directory above it searchable (o+x), a
// directory also listable, a file readable (o+r).
func othersMayRead(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("%s is not readable by all (mode %v; chmod o+r)", path, fi.Mode().Perm())
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		di, err := os.Stat(d)
		if err != nil {
			return err
		}
		if di.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is in %s, which not all may enter (mode %v; chmod o+x)", path, d, di.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// checkFree fails with ErrExists when an app holds the name, unless
// force: one that has a record (returned), a unit of the name that runs
// or is enabled, or a config file of the name.
func (m *Manager) checkFree(ctx context.Context, s Spec, units Units, svc props, force bool) (Record, bool, error) {
	rec, err := m.readRecord(s.Name)
	switch {
	case err == nil:
		if force {
			return rec, true, nil
		}
		return rec, true, fmt.Errorf("%w: %s, started %s in %s with %s; replace it with corral start --force, or pick another --name",
			ErrExists, s.Name, rec.Created.Local().Format("2006-01-02 15:04"), rec.Dir, strings.Join(rec.Command, " "))
	case !errors.Is(err, os.ErrNotExist):
		return rec, false, err
	}
	if force {
		return rec, false, nil
	}
	// Not loaded for this: Start writes the socket's drop-in next, which a
	// loaded socket would only see after a daemon-reload.
	sockState, _, err := m.loadedState(ctx, units.Socket)
	if err != nil {
		return rec, false, err
	}
	for _, p := range []props{svc, {"Id": units.Socket, "ActiveState": sockState}} {
		if st := p.str("ActiveState"); st != "" && st != "inactive" {
			return rec, false, fmt.Errorf("%w: %s is %s, set up by hand (not by corral start); stop it first, replace it with corral start --force, or pick another --name",
				ErrExists, p.str("Id"), st)
		}
		if st := p.str("UnitFileState"); strings.HasPrefix(st, "enabled") {
			return rec, false, fmt.Errorf("%w: %s is %s, set up by hand (not by corral start); replace it with corral start --force, or pick another --name",
				ErrExists, p.str("Id"), st)
		}
	}
	if _, err := os.Stat(m.configPath(s.Name)); err == nil {
		return rec, false, fmt.Errorf("%w: %s exists and corral start did not write it; replace it with corral start --force, or pick another --name",
			ErrExists, m.configPath(s.Name))
	}
	return rec, false, nil
}

// ErrPortInUse means a port the app would listen on is taken.
var ErrPortInUse = errors.New("address in use")

// checkPorts fails when another process holds an address the app would
// listen on, and names it. The app's own socket (when replaced) is not
// another.
func (m *Manager) checkPorts(ctx context.Context, s Spec, units Units) error {
	for _, l := range s.Listen {
		port := listenPort(l)
		if port == 0 {
			continue
		}
		addr := l
		if !strings.Contains(l, ":") {
			addr = ":" + l
		}
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			continue
		}
		if errors.Is(err, syscall.EACCES) {
			return badInput(fmt.Errorf("port %d: only root may listen below 1024 (%v): use the system manager (sudo corral start ...), or a port from 1024 up", port, err))
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return badInput(fmt.Errorf("listen %s: %w", l, err))
		}
		owner := m.portOwner(ctx, port)
		if owner == units.Socket {
			continue
		}
		if t, name, ok := splitInstance(owner, ".socket"); ok {
			owner = fmt.Sprintf("the app %s (%s@%s.socket)", name, t, name)
		}
		return fmt.Errorf("%w: port %d is taken by %s: pick another --port, or stop it", ErrPortInUse, port, owner)
	}
	return nil
}

// portOwner names what listens on port: a socket unit of this manager,
// else a process, else says it could not tell.
func (m *Manager) portOwner(ctx context.Context, port int) string {
	if sockets, err := m.conn.ListUnitsByPatternsContext(ctx, []string{"active", "activating"}, []string{"*.socket"}); err == nil {
		for _, u := range sockets {
			p, err := m.typeProps(ctx, u.Name, "Socket")
			if err != nil {
				continue
			}
			for _, l := range p.listens() {
				if listenPort(l) == port {
					return u.Name
				}
			}
		}
	}
	if pid, comm := listenerProcess(port); pid > 0 {
		return describeProcess(pid, comm)
	}
	return fmt.Sprintf("a process this user cannot see (as root: ss -ltnp 'sport = :%d')", port)
}

// describeProcess names a process by the unit it runs in: the app NAME
// for an instance of a corral template, else the unit, else its command.
func describeProcess(pid int, comm string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	var unit, owner string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || (f[0] != "0" && !strings.Contains(f[1], "name=systemd")) {
			continue
		}
		for _, part := range strings.Split(f[2], "/") {
			if uid, ok := strings.CutPrefix(part, "user@"); ok && strings.HasSuffix(uid, ".service") {
				owner = " of the user manager of UID " + strings.TrimSuffix(uid, ".service")
			}
			if strings.HasSuffix(part, ".service") || strings.HasSuffix(part, ".socket") {
				unit = part
			}
		}
	}
	if _, name, ok := splitInstance(unit, ".service"); ok {
		return fmt.Sprintf("the app %s%s (%s, process %d)", name, owner, unit, pid)
	}
	if unit != "" {
		return fmt.Sprintf("%s%s (process %d, %s)", unit, owner, pid, comm)
	}
	return fmt.Sprintf("process %d (%s)", pid, comm)
}

// loadedState returns unit's ActiveState and true when systemd has it
// loaded, without loading it as a property read would; "" and false when
// it is not loaded.
func (m *Manager) loadedState(ctx context.Context, unit string) (string, bool, error) {
	units, err := m.conn.ListUnitsByPatternsContext(ctx, nil, []string{unit})
	if err != nil {
		return "", false, fmt.Errorf("list %s: %w", unit, err)
	}
	for _, u := range units {
		if u.Name == unit && u.LoadState != "not-found" {
			return u.ActiveState, true, nil
		}
	}
	return "", false, nil
}
