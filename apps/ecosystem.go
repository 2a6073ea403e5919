package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corraldev/corral/config"
)

// Imported is one app of a PM2 ecosystem file, as corral would start it,
// or why it cannot be.
type Imported struct {
	Spec Spec
	// Err says why the app cannot be started; Spec is incomplete then.
	Err error
	// Unmapped are the keys corral has no use for, each with why.
	Unmapped []string
}

// ImportOptions say how to read an ecosystem file.
type ImportOptions struct {
	// Env selects env_NAME, laid over env, as `pm2 start --env NAME` does.
	Env string
	// Getenv reads the importer's environment for PM2_GRACEFUL_TIMEOUT
	// and PM2_GRACEFUL_LISTEN_TIMEOUT; default os.Getenv.
	Getenv func(string) string
	// Node is the program that evaluates a .js file; default "node".
	Node string
}

// unmapped says why corral has no use for a PM2 key.
var unmapped = map[string]string{
	"watch":                     "corral does not restart on file changes: deploy, then corral reload",
	"ignore_watch":              "corral does not restart on file changes",
	"watch_options":             "corral does not restart on file changes",
	"cron_restart":              "use a systemd timer that runs corral reload",
	"log_file":                  "the output goes to the journal: corral logs NAME",
	"out_file":                  "the output goes to the journal: corral logs NAME",
	"error_file":                "the output goes to the journal: corral logs NAME",
	"merge_logs":                "the journal keeps every worker's output, each line with its PID",
	"combine_logs":              "the journal keeps every worker's output, each line with its PID",
	"log_date_format":           "the journal stamps every line",
	"log_type":                  "the journal stores the output: journalctl -o json",
	"pid_file":                  "systemd tracks the PIDs: corral status NAME",
	"autorestart":               "corral always restarts a crashed worker, with backoff",
	"max_restarts":              "corral's backoff is built in: 100 ms × 1.5 up to 15 s",
	"min_uptime":                "corral's backoff resets after 30 s online",
	"restart_delay":             "corral's backoff is built in: 100 ms × 1.5 up to 15 s",
	"exp_backoff_restart_delay": "corral's backoff is built in: 100 ms × 1.5 up to 15 s",
	"instance_var":              "the variable is NODE_APP_INSTANCE (and CORRAL_WORKER_INDEX)",
	"increment_var":             "not supported",
	"shutdown_with_message":     "corral always sends Node workers 'shutdown' first",
	"treekill":                  "corral signals each worker's process group",
	"force":                     "corral import refuses a name in use; corral start --force replaces an app",
	"source_map_support":        "give node --enable-source-maps in node_args",
	"vizion":                    "no version metadata is kept",
	"post_update":               "no deploy hooks",
	"namespace":                 "no namespaces: names are unique per manager",
	"time":                      "the journal stamps every line",
	"kill_retry_time":           "the stop timeout is one deadline, then SIGKILL",
	"listen_address":            "listen on one address with corral start --listen HOST:PORT",
}

// Ecosystem reads a PM2 ecosystem file (ecosystem.config.js, evaluated by
// node as PM2 requires it, or .json) and returns its apps as corral
// would start them, in the file's order.
func Ecosystem(ctx context.Context, path string, opts ImportOptions) ([]Imported, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, badInput(err)
	}
	raw, err := readEcosystem(ctx, abs, opts.Node)
	if err != nil {
		return nil, err
	}
	var file struct {
		Apps []map[string]any `json:"apps"`
	}
	if err := json.Unmarshal(raw, &file); err != nil || file.Apps == nil {
		var list []map[string]any // a bare array of apps, which PM2 takes too
		if err2 := json.Unmarshal(raw, &list); err2 != nil {
			return nil, badInput(fmt.Errorf("%s: want an object with apps: [...] (as module.exports = {apps: [...]}), or an array of apps", path))
		}
		file.Apps = list
	}
	if len(file.Apps) == 0 {
		return nil, badInput(fmt.Errorf("%s: no apps", path))
	}
	out := make([]Imported, len(file.Apps))
	for i, a := range file.Apps {
		out[i] = importApp(a, filepath.Dir(abs), opts)
	}
	return out, nil
}

// readEcosystem returns the file's apps as JSON: a .js file through node.
func readEcosystem(ctx context.Context, path, node string) ([]byte, error) {
	switch filepath.Ext(path) {
	case ".json":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, badInput(fmt.Errorf("read %w", err))
		}
		return b, nil
	case ".js", ".cjs", ".mjs":
	default:
		return nil, badInput(fmt.Errorf("%s: want an ecosystem file ending in .js, .cjs, .mjs or .json", path))
	}
	if node == "" {
		node = "node"
	}
	prog, err := exec.LookPath(node)
	if err != nil {
		return nil, badInput(fmt.Errorf("%s is JavaScript, which node evaluates, and node is not installed (%v): install it, or write the apps as JSON", path, err))
	}
	const eval = `Promise.resolve(require(process.argv[1])).then(m => { m = m && m.default || m; process.stdout.write(JSON.stringify(m)) })`
	cmd := exec.CommandContext(ctx, prog, "-e", eval, path)
	cmd.Dir = filepath.Dir(path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, badInput(fmt.Errorf("node could not evaluate %s: %v\n%s", path, err, strings.TrimSpace(stderr.String())))
	}
	return b, nil
}

// importApp maps one app of the file.
func importApp(a map[string]any, base string, opts ImportOptions) Imported {
	var im Imported
	cfg := config.Default()
	str := func(k string) string { s, _ := a[k].(string); return s }
	dir := base
	if cwd := str("cwd"); cwd != "" {
		dir = cwd
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(base, cwd)
		}
	}
	cfg.WorkingDirectory = dir
	env := map[string]string{}
	mergeEnv(env, a["env"])
	if opts.Env != "" {
		if e, ok := a["env_"+opts.Env]; ok {
			mergeEnv(env, e)
		}
	}
	var fail []string
	for _, k := range sortedKeys(a) {
		switch k {
		case "name", "script", "args", "interpreter", "node_args", "interpreter_args", "cwd", "env", "exec_mode":
		case "instances":
			if err := cfg.Instances.Set(fmt.Sprint(a[k])); err != nil {
				fail = append(fail, err.Error())
			}
		case "wait_ready":
			if b, _ := a[k].(bool); b {
				cfg.Ready = "notify"
			}
		case "listen_timeout":
			if err := setMillis(&cfg.ReadyTimeout, a[k]); err != nil {
				fail = append(fail, "listen_timeout: "+err.Error())
			}
		case "kill_timeout":
			if err := setMillis(&cfg.StopTimeout, a[k]); err != nil {
				fail = append(fail, "kill_timeout: "+err.Error())
			}
		case "max_memory_restart":
			if err := cfg.MaxMemory.Set(fmt.Sprint(a[k])); err != nil {
				fail = append(fail, "max_memory_restart: "+err.Error())
			}
		default:
			switch why, ok := unmapped[k]; {
			case ok:
				im.Unmapped = append(im.Unmapped, k+": "+why)
			case strings.HasPrefix(k, "env_"):
				if k != "env_"+opts.Env {
					im.Unmapped = append(im.Unmapped, fmt.Sprintf("%s: not used (corral import --env %s uses it)", k, strings.TrimPrefix(k, "env_")))
				}
			default:
				im.Unmapped = append(im.Unmapped, k+": no corral equivalent")
			}
		}
	}
	// PM2 reads these from its own environment, for apps that set none.
	if _, set := a["listen_timeout"]; !set {
		if v := opts.Getenv("PM2_GRACEFUL_LISTEN_TIMEOUT"); v != "" {
			if err := setMillis(&cfg.ReadyTimeout, v); err != nil {
				fail = append(fail, "PM2_GRACEFUL_LISTEN_TIMEOUT: "+err.Error())
			}
		}
	}
	if _, set := a["kill_timeout"]; !set {
		if v := opts.Getenv("PM2_GRACEFUL_TIMEOUT"); v != "" {
			if err := setMillis(&cfg.StopTimeout, v); err != nil {
				fail = append(fail, "PM2_GRACEFUL_TIMEOUT: "+err.Error())
			}
		}
	}
	if mode := str("exec_mode"); mode == "fork" || mode == "fork_mode" {
		if _, set := a["instances"]; !set {
			cfg.Instances.Set("1")
		}
		im.Unmapped = append(im.Unmapped, "exec_mode: fork: corral runs every app as a cluster on a shared socket; instances 1 unless set")
	}
	if len(env) > 0 {
		cfg.Environment = env
	}
	command, err := importCommand(a, dir)
	if err != nil {
		fail = append(fail, err.Error())
	}
	cfg.Command = command
	name := str("name")
	if name == "" && command != nil {
		name = DefaultName(command)
	}
	im.Spec = Spec{Name: name, Config: cfg}
	if port := env["PORT"]; port != "" {
		l, err := PortListen(port)
		if err != nil {
			fail = append(fail, "env PORT: "+err.Error())
		}
		im.Spec.Listen = []string{l}
	} else {
		fail = append(fail, "no PORT in env: give the app env: {PORT: 3000}, corral listens on it for the workers")
	}
	if len(fail) > 0 {
		im.Err = badInput(errors.New(strings.Join(fail, "; ")))
	}
	return im
}

// importCommand builds the command from script, args, interpreter and
// node_args (or interpreter_args), by PM2's interpreter rule.
func importCommand(a map[string]any, dir string) ([]string, error) {
	script, _ := a["script"].(string)
	if script == "" {
		return nil, errors.New("no script")
	}
	args := words(a["args"])
	interp, _ := a["interpreter"].(string)
	iargs := words(a["node_args"])
	if v, ok := a["interpreter_args"]; ok {
		iargs = words(v)
	}
	cmd, err := Command(script, args, interp, dir)
	if err != nil || len(iargs) == 0 || len(cmd) == len(args)+1 {
		return cmd, err
	}
	return append(append([]string{cmd[0]}, iargs...), cmd[1:]...), nil
}

// words returns a string split at spaces, as PM2 splits args, or a list
// of strings.
func words(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, w := range v {
			out = append(out, fmt.Sprint(w))
		}
		return out
	}
	return nil
}

func mergeEnv(dst map[string]string, v any) {
	m, _ := v.(map[string]any)
	for k, val := range m {
		switch val := val.(type) {
		case string:
			dst[k] = val
		case float64:
			dst[k] = strconv.FormatFloat(val, 'f', -1, 64)
		case nil:
		default:
			b, _ := json.Marshal(val)
			dst[k] = string(b)
		}
	}
}

// setMillis sets d from PM2's milliseconds, a number or a numeric string.
func setMillis(d *config.Duration, v any) error {
	var ms float64
	switch v := v.(type) {
	case float64:
		ms = v
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return fmt.Errorf("%q: want milliseconds, as 3000", v)
		}
		ms = f
	default:
		return fmt.Errorf("%v: want milliseconds, as 3000", v)
	}
	if ms <= 0 {
		return fmt.Errorf("%v: want a positive number of milliseconds", ms)
	}
	*d = config.Duration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ConfigText returns the config file Start writes for s.
func (s Spec) ConfigText() (string, error) {
	cfg := s.Config
	cfg.Listen = nil
	return configText(fmt.Sprintf("The app %s.", s.Name), cfg)
}

// SocketDropIn returns the socket drop-in Start writes for s.
func (s Spec) SocketDropIn() string { return socketDropIn(s) }
