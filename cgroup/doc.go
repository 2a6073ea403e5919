// Package cgroup gives each worker a cgroup of its own, in the part of the
// unified (v2) cgroup hierarchy that systemd delegated to corral, and
// measures a worker's memory and CPU, children included.
//
// Under a unit with Delegate=yes, systemd hands the service's cgroup S to
// corral (systemd's "Control Group APIs and Delegation": the manager in a
// leaf of its own, each payload in a sibling). Open moves corral into
// S/corral and enables the memory and cpu controllers for S's children
// where S has them; Tree.NewGroup then makes one cgroup per worker beside
// it, S/APP.workerSLOT.genGEN, which the worker moves into before it runs
// the app (see package activation's trampoline):
//
//	corral@api.service/            S, delegated by systemd
//	├── corral/                    corral itself
//	├── api.worker0.gen1/          slot 0 of generation 1, and all its children
//	└── api.worker1.gen1/
//
// The hierarchy is the pure v2 one at /sys/fs/cgroup, or the unified tree
// of a hybrid system at /sys/fs/cgroup/unified, which has cgroups but no
// controllers. Either way a Group can be killed whole (cgroup.kill) and
// tells when it is empty (cgroup.events), and cpu.stat counts its CPU time.
// Its memory is memory.current less the page cache the kernel may drop at
// once (inactive_file), where the memory controller is delegated; elsewhere
// the resident memory of its processes, summed from /proc. memory.max and
// memory.high need the controller.
//
// Where no subtree is delegated (corral run in a terminal, a unit without
// Delegate=, a container that gives none) Open says why, and ProcessTree
// measures a worker and its descendants from /proc instead.
//
// Watcher delivers the kernel's notifications (a modified cgroup.events or
// memory.events) without polling, through inotify in Go's network poller.
//
// This package is corral's machinery, not an API for other programs.
package cgroup
