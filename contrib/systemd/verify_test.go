package systemd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/corraldev/corral/internal/testenv"

	"github.com/corraldev/corral/contrib/systemd"
)

// maxExposure is the highest `systemd-analyze security` exposure the
// service may have; it rates 1.2 as shipped, Delegate= included.
const maxExposure = 1.2

// writeUnits writes the units for opts into a new directory and returns
// their paths. systemd-analyze verify wants ExecStart='s binary to exist,
// so corral is this test binary.
func writeUnits(t *testing.T, template string, user bool) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	units, err := systemd.Units(systemd.Options{Template: template, Corral: self, User: user})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		p := filepath.Join(dir, u.Name)
		testenv.WriteFile(t, p, u.Text)
		paths = append(paths, p)
	}
	return paths
}

func TestUnitsVerify(t *testing.T) {
	analyze := testenv.Need(t, "systemd-analyze", "systemd")
	for _, tc := range []struct {
		template string
		user     bool
	}{{"corral", false}, {"app", false}, {"corral", true}, {"app", true}} {
		t.Run(fmt.Sprintf("%s,user=%v", tc.template, tc.user), func(t *testing.T) {
			paths := writeUnits(t, tc.template, tc.user)
			args := []string{"verify"}
			if tc.user {
				args = []string{"--user", "verify"}
			}
			cmd := exec.Command(analyze, append(args, paths...)...)
			// A user manager needs a runtime directory, even to verify.
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze %s %s: %v\n%s", strings.Join(args, " "), strings.Join(paths, " "), err, out)
			}
		})
	}
}

var overall = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`)

func TestServiceSecurityExposure(t *testing.T) {
	analyze := testenv.Need(t, "systemd-analyze", "systemd")
	service := writeUnits(t, "corral", false)[0]
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", service).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes %s: %v\n%s", service, err, out)
	}
	m := overall.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	var open []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "✗") {
			open = append(open, strings.Join(strings.Fields(line), " "))
		}
	}
	t.Logf("systemd-analyze security --offline=yes: exposure %s %s; left open:\n%s", m[1], m[2], strings.Join(open, "\n"))
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > maxExposure {
		t.Errorf("exposure %s is above %.1f: a hardening directive was lost", m[1], maxExposure)
	}
}
