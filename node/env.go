package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WithPreload writes Preload into dir (corral's runtime directory) and
// returns env with NODE_OPTIONS requiring it, ahead of any NODE_OPTIONS env
// already holds, so that an unmodified app's listen(PORT) takes the
// inherited socket. The file is rewritten only when it differs.
func WithPreload(env []string, dir string) ([]string, error) {
	path := filepath.Join(dir, "corral-preload.js")
	if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, []byte(Preload)) {
		if err := os.WriteFile(path, []byte(Preload), 0o644); err != nil {
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
