package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/corraldev/corral/node"
)

// withNodePreload writes corral's listen() preload into the runtime
// directory and returns env with NODE_OPTIONS requiring it, so that an
// unmodified app's listen(PORT) takes the inherited socket.
func withNodePreload(env []string, runtimeDir string) ([]string, error) {
	path := filepath.Join(runtimeDir, "corral-preload.js")
	if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, []byte(node.Preload)) {
		if err := os.WriteFile(path, []byte(node.Preload), 0o644); err != nil {
			return nil, fmt.Errorf("write the Node preload: %w", err)
		}
	}
	req := "--require " + path
	if strings.ContainsAny(path, " \"\\") {
		req = fmt.Sprintf("--require %q", path)
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NODE_OPTIONS="); ok {
			if strings.Contains(v, req) {
				req = v
			} else {
				req += " " + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "NODE_OPTIONS="+req), nil
}
