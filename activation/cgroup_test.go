package activation

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/corraldev/corral/internal/cgtest"
)

func init() {
	helpers["cgroup"] = helperCgroup
	helpers["journal"] = helperJournal
}

// helperCgroup reports the cgroup it runs in, as "cgroup PATH".
func helperCgroup(w io.Writer) error {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			fmt.Fprintf(w, "cgroup %s\n", p)
		}
	}
	fmt.Fprintln(w, "ready")
	return nil
}

// A worker with a Cgroup runs in it: the trampoline moves itself there
// before it runs the app, so the app and its children are there too. One
// it cannot move into fails to start, rather than run outside it.
func TestLaunchIntoCgroup(t *testing.T) {
	dir := cgtest.Dir(t, false)
	c := startChild(t, launchChild(t, &Worker{
		Path: testBinary(t), Cgroup: dir, Env: childEnv(helperEnv + "=cgroup"),
	}))
	c.mustSucceed(t)
	if want := "cgroup " + cgtest.Path(dir); len(c.report) != 1 || c.report[0] != want {
		t.Errorf("worker reported %q, want %q", c.report, want)
	}
}

func TestLaunchIntoMissingCgroup(t *testing.T) {
	c := launchChild(t, &Worker{Path: testBinary(t), Cgroup: t.TempDir() + "/none", Env: childEnv(helperEnv + "=cgroup")})
	err := c.wait()
	if err == nil || err.Error() != "exited with status 127" || !strings.Contains(c.stderr.String(), "move into cgroup") {
		t.Errorf("a worker whose cgroup is missing: %v, %q; want status 127 and the reason", err, c.stderr.String())
	}
}
