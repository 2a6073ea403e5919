package main

import (
	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/config"
)

// cgroups is the cgroup tree systemd delegated to corral, or why there is
// none.
type cgroups struct {
	tree *cgroup.Tree
	why  error
}

// openCgroups takes the cgroup systemd delegated to corral, moving corral
// into a leaf of its own, and says in the log, once, what it found.
func openCgroups(log *logger) cgroups {
	t, err := cgroup.Open()
	if err != nil {
		log.infof("cgroups: none: %v; falling back to per-process accounting from /proc: a worker's figures are its process tree's, and what it leaves in another session is not stopped with it", err)
		return cgroups{why: err}
	}
	log.infof("cgroups: %s", t)
	return cgroups{tree: t}
}

// check refuses settings that need what the cgroups cannot do, naming the
// reason and the ways out.
func (c cgroups) check(cfg config.Config) error {
	if cfg.MemoryLimit.Bytes() <= 0 {
		return nil
	}
	limit := cfg.MemoryLimit.String()
	if c.tree == nil {
		return usagef("memory_limit %s: a hard limit needs each worker in a cgroup with the memory controller, and corral has no cgroup of its own here (%v); "+
			"run it under corral@.service on a cgroup v2 system, or use max_memory to recycle workers instead, or MemoryMax= on the unit to bound the whole app", limit, c.why)
	}
	if !c.tree.Memory() {
		return usagef("memory_limit %s: a hard limit needs the memory controller, which corral's cgroup %s does not have "+
			"(a hybrid cgroup system: its unified tree has no controllers; cgroup v2 alone, systemd.unified_cgroup_hierarchy=1, has them); "+
			"use max_memory to recycle workers instead, or MemoryMax= on the unit to bound the whole app", limit, c.tree.Dir())
	}
	return nil
}
