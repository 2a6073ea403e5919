package apps_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// An ecosystem file shaped like PM2's documented examples, evaluated by
// node: several apps, env_production, cluster mode; imported under the
// system manager, run for real, then deleted.
func TestImportEcosystem(t *testing.T) {
	m := boot(t)
	testenv.Need(t, "node", "nodejs")
	shop, hello := testenv.FreeAddr(t), testenv.FreeAddr(t)
	m.must(t, "", "/", "mkdir", "-p", "/srv/shop")
	m.write(t, "", "/srv/shop/app.js", `
const http = require('http');
http.createServer((req, res) => res.end('shop ' + process.env.NODE_ENV + ' pid ' + process.pid + '\n'))
  .listen(process.env.PORT, () => process.send && process.send('ready'));
`)
	m.write(t, "", "/srv/shop/ecosystem.config.js", fmt.Sprintf(`module.exports = {
  apps : [{
    name      : "shop",
    script    : "./app.js",
    instances : 2,
    exec_mode : "cluster",
    wait_ready: true,
    listen_timeout: 10000,
    kill_timeout: 5000,
    watch     : true,
    env: { PORT: %s, NODE_ENV: "development" },
    env_production : { NODE_ENV: "production" }
  }, {
    name   : "hello",
    script : "/usr/local/bin/hello",
    args   : "-startup-delay 10ms",
    instances: 1,
    env: { PORT: "%s" },
    max_memory_restart: "300M"
  }]
}
`, port(shop), port(hello)))

	dry := m.mustCorral(t, "", "/srv/shop", "import", "ecosystem.config.js", "--env", "production", "--dry-run")
	for _, want := range []string{"# shop.toml", `NODE_ENV = "production"`, `ready = "notify"`, `ready_timeout = "10s"`, `stop_timeout = "5s"`,
		"ListenStream=" + port(shop), "# hello.toml", "not mapped: watch", `max_memory = "300M"`} {
		if !strings.Contains(dry, want) {
			t.Errorf("corral import --dry-run lacks %q:\n%s", want, dry)
		}
	}
	if len(m.ls(t, "")) != 0 {
		t.Error("corral import --dry-run created apps")
	}

	out := m.mustCorral(t, "", "/srv/shop", "import", "ecosystem.config.js", "--env", "production")
	t.Logf("corral import:\n%s", out)
	t.Cleanup(func() {
		m.corral("", "/", "delete", "shop")
		m.corral("", "/", "delete", "hello")
	})
	if body := testenv.Get(t, shop); !strings.HasPrefix(body, "shop production") {
		t.Errorf("GET the shop: %q, want its env_production", body)
	}
	servingPIDs(t, shop, 2)
	servingPIDs(t, hello, 1)
	for _, name := range []string{"shop", "hello"} {
		if in := m.app(t, "", name); in.State != "active" {
			t.Errorf("after the import, %s is %s", name, in.State)
		}
	}
	m.mustCorral(t, "", "/", "reload", "all")
	m.mustCorral(t, "", "/", "delete", "shop")
	m.mustCorral(t, "", "/", "delete", "hello")
}

// A file node cannot evaluate is refused with node's error, naming the
// file and the line.
func TestImportBrokenFile(t *testing.T) {
	m := boot(t)
	testenv.Need(t, "node", "nodejs")
	m.write(t, "", "/srv/broken/ecosystem.config.js", "module.exports = {\n  apps: [{ name: 'x', script: 'app.js' ]\n}\n")
	out, ok := m.corral("", "/srv/broken", "import", "ecosystem.config.js")
	if ok || !strings.Contains(out, "node could not evaluate /srv/broken/ecosystem.config.js") || !strings.Contains(out, "ecosystem.config.js:2") {
		t.Errorf("corral import of a broken file: exit 0 = %v, want node's error with the file and line:\n%s", ok, out)
	}
}
