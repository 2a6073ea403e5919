package apps

import (
	"fmt"
	"strings"
)

// DefaultTemplate is the template the packages ship: corral@.service and
// corral@.socket.
const DefaultTemplate = "corral"

// All is the name that stands for every app in reload, restart and stop;
// no app may have it.
const All = "all"

// maxName bounds an app name so that its unit names stay well within
// systemd's 255 bytes.
const maxName = 200

// CheckName returns an error, naming the fix, unless name can be an app's
// name: the instance of a systemd template unit, not All.
func CheckName(name string) error {
	const allowed = "letters, digits and \":_.-\", not starting with '.' or '-' (as in api, shop-web or api.v2)"
	switch {
	case name == "":
		return fmt.Errorf("app name is empty: want %s", allowed)
	case name == All:
		return fmt.Errorf("app name %q is reserved: it stands for every app (corral reload all); pick another with --name", name)
	case len(name) > maxName:
		return fmt.Errorf("app name %.20q...: %d bytes, at most %d", name, len(name), maxName)
	case name[0] == '.' || name[0] == '-':
		return fmt.Errorf("app name %q: want %s", name, allowed)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(":_.-", c)) {
			return fmt.Errorf("app name %q: %q is not allowed in a systemd instance name; want %s", name, c, allowed)
		}
	}
	return nil
}

// Units names an app's two units.
type Units struct {
	Service string // TEMPLATE@NAME.service
	Socket  string // TEMPLATE@NAME.socket
}

// UnitsOf returns the units of the app name of template.
func UnitsOf(template, name string) Units {
	return Units{Service: template + "@" + name + ".service", Socket: template + "@" + name + ".socket"}
}

// splitInstance splits "TEMPLATE@NAME.service" into its template and
// instance, or reports false.
func splitInstance(unit, suffix string) (template, name string, ok bool) {
	base, ok := strings.CutSuffix(unit, suffix)
	if !ok {
		return "", "", false
	}
	template, name, ok = strings.Cut(base, "@")
	return template, name, ok && template != "" && name != ""
}
