package workers

import (
	"time"

	"github.com/corraldev/corral/node"
)

// Node workers (Spec.NodeIPC) get Node's IPC channel from package node:
// process.send('ready') or process.send('online') counts as online, and a
// graceful stop sends 'shutdown' first, the stop signal after shutdownGrace.

// shutdownGrace is how long a Node worker has after the 'shutdown' message
// before it also gets the stop signal: half its stop timeout, at most 5s.
func shutdownGrace(s *Spec) time.Duration {
	return min(s.StopTimeout/2, 5*time.Second)
}

type ipcEvent struct {
	w   *worker
	msg node.Message
}

// readIPC delivers w's messages to Run until the channel closes, which
// exited does.
func (p *Pool) readIPC(w *worker, c *node.Channel) {
	for {
		m, err := c.Read()
		if err != nil {
			return
		}
		select {
		case p.ipcs <- ipcEvent{w, m}:
		case <-p.quit:
			return
		}
	}
}

// ipc handles a message on a worker's Node IPC channel.
func (p *Pool) ipc(ev ipcEvent) {
	switch w := ev.w; {
	case ev.msg == node.Dropped:
		p.ipcDropped++
	case p.workers[w.pid] == w && w.state == starting:
		p.online(w)
	}
}
