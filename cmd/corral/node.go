package main

import (
	"strings"
)

// withNodePreload returns env with corral's listen() preload added to
// NODE_OPTIONS, so that an unmodified app's listen(PORT) takes the
// inherited socket. (Filled in with the preload itself.)
func withNodePreload(env []string, runtimeDir string) ([]string, error) {
	_ = runtimeDir
	_ = strings.Cut
	return env, nil
}
