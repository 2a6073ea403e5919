package workers

import (
	"os"
	"syscall"
	"testing"

	"github.com/corraldev/corral/internal/proc"
)

func processExists(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// zombies lists this process's children in state Z.
func zombies(t *testing.T) []int {
	t.Helper()
	pids, err := proc.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	var z []int
	for _, pid := range pids {
		if st, err := proc.ReadStat(pid); err == nil && st.Zombie() && st.PPID == os.Getpid() {
			z = append(z, pid)
		}
	}
	return z
}
