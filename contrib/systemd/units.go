// Package systemd holds corral's systemd units, corral@.service and
// corral@.socket, exactly as they ship in this directory: for the system
// manager here, and for a user's own manager (systemctl --user) in user/.
//
// An app NAME runs as the instance corral@NAME: the socket unit owns its
// listening sockets, the service runs `corral run --config
// /etc/corral/NAME.toml` and reloads with the synchronous `corral reload`.
// Units returns the same two files under another template name, so that
// `systemctl start app@api` runs the same app, and with corral at another
// path; `corral units` writes them. The tests in this directory run the
// shipped files under a real systemd user manager.
package systemd

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

//go:embed corral@.service
var serviceUnit string

//go:embed corral@.socket
var socketUnit string

//go:embed user/corral@.service
var userServiceUnit string

//go:embed user/corral@.socket
var userSocketUnit string

// The template name and corral's path as the shipped files spell them.
const (
	DefaultTemplate = "corral"
	DefaultCorral   = "/usr/bin/corral"
)

// Options say how Units changes the shipped files. The zero value changes
// nothing.
type Options struct {
	// Template is the template name: the units are Template@.service and
	// Template@.socket. Default DefaultTemplate.
	Template string
	// Corral is the absolute path of the corral binary in ExecStart= and
	// ExecReload=. Default DefaultCorral.
	Corral string
	// User selects the units for a user's own manager: configs in
	// ~/.config/corral, sockets in $XDG_RUNTIME_DIR, no DynamicUser=.
	User bool
}

// Unit is one unit file: its name, such as "corral@.service", and its text.
type Unit struct {
	Name string
	Text string
}

// templateName is what systemd allows before the "@" of a template unit.
var templateName = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+$`)

// Units returns the service and the socket unit, in that order, for opts.
// It returns an error, and no units, when the template name is not one
// systemd accepts or the corral path is not absolute.
func Units(opts Options) ([]Unit, error) {
	tmpl, corral := opts.Template, opts.Corral
	if tmpl == "" {
		tmpl = DefaultTemplate
	}
	if corral == "" {
		corral = DefaultCorral
	}
	if !templateName.MatchString(tmpl) || len(tmpl) > 200 {
		return nil, fmt.Errorf("template name %q: want letters, digits and \":_.-\", as in app (for app@.service)", tmpl)
	}
	if !strings.HasPrefix(corral, "/") || strings.ContainsAny(corral, " \t\n\"'\\%") {
		return nil, fmt.Errorf("corral path %q: want an absolute path without spaces, quotes or %%", corral)
	}
	rename := strings.NewReplacer(DefaultTemplate+"@", tmpl+"@", DefaultCorral+" ", corral+" ")
	service, socket := serviceUnit, socketUnit
	if opts.User {
		service, socket = userServiceUnit, userSocketUnit
	}
	return []Unit{
		{Name: tmpl + "@.service", Text: rename.Replace(service)},
		{Name: tmpl + "@.socket", Text: rename.Replace(socket)},
	}, nil
}
