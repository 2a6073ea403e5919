package apps_test

import (
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// An app started by name is a unit that comes back at boot: root's under
// the system manager, alice's under her lingering user manager; one
// started with --no-enable does not.
func TestAppsSurviveAReboot(t *testing.T) {
	m := boot(t)
	sys, usr, once := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	m.must(t, "", "/", "mkdir", "-p", "/srv/boot")
	m.mustCorral(t, "", "/srv/boot", "start", "/usr/local/bin/hello", "-n", "boot", "-i", "2", "--port", port(sys))
	m.mustCorral(t, "", "/srv/boot", "start", "/usr/local/bin/hello", "-n", "once", "-i", "1", "--port", port(once), "--no-enable")
	m.mustCorral(t, user, "/home/"+user, "start", "/usr/local/bin/hello", "-n", "uboot", "-i", "1", "--port", port(usr))
	servingPIDs(t, sys, 2)
	servingPIDs(t, usr, 1)
	servingPIDs(t, once, 1)

	m.reboot(t)

	servingPIDs(t, sys, 2)
	servingPIDs(t, usr, 1)
	if in := m.app(t, "", "boot"); in.State != "active" || in.Online != 2 {
		t.Errorf("after the reboot, boot is %s with %d/%d online, want active, 2/2", in.State, in.Online, in.Instances)
	}
	if in := m.app(t, user, "uboot"); in.State != "active" || in.Online != 1 {
		t.Errorf("after the reboot, %s's uboot is %s with %d/%d online, want active, 1/1", user, in.State, in.Online, in.Instances)
	}
	if in := m.app(t, "", "once"); in.State != "inactive" || !refused(once) {
		t.Errorf("after the reboot, once (--no-enable) is %s, want inactive and not listening", in.State)
	}
	m.mustCorral(t, "", "/", "delete", "boot")
	m.mustCorral(t, "", "/", "delete", "once")
	m.mustCorral(t, user, "/", "delete", "uboot")
}
