package executor

import (
	"encoding/json"
	"fmt"
)

// Module access control is policy and telemetry, not a boundary: Debian's
// python3 compiles _socket, posix and others into the binary, an import hook can
// be removed by the code it watches, and Node's permission model does not cover
// the network. The boundary is the namespaces, the mount view, seccomp and
// Landlock. The hooks below stop imports through the normal path of modules
// that are not listed, and report each denial on stderr with DeniedImportPrefix,
// which the runner strips and turns into an event.

// DeniedImportPrefix starts the stderr line that reports a denied import.
const DeniedImportPrefix = "nodex-denied-import: "

const nodeGuardFile = ".nodex-guard.cjs"

// pythonGuard returns Python code that installs an import hook allowing only
// the listed top-level modules, for imports made from files under /work.
// Imports made by the standard library itself are left alone.
func pythonGuard(modules []string) string {
	if modules == nil {
		return ""
	}
	list, _ := json.Marshal(modules)
	return fmt.Sprintf(`class _NodexGuard:
    allowed = frozenset(%s)
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.allowed or top in sys.builtin_module_names and top in sys.modules:
            return None
        f = sys._getframe(1)
        while f is not None and f.f_code.co_filename.startswith("<frozen"):
            f = f.f_back
        if f is None or not f.f_code.co_filename.startswith("/work/"):
            return None
        sys.stderr.write(%q + top + "\n")
        sys.stderr.flush()
        raise ImportError("import of " + top + " is not allowed in this sandbox", name=name)
sys.meta_path.insert(0, _NodexGuard())
del _NodexGuard`, list, DeniedImportPrefix)
}

// nodeGuard returns a CommonJS preload that allows require() of the listed
// modules and of relative paths only.
func nodeGuard(modules []string) string {
	list, _ := json.Marshal(modules)
	return fmt.Sprintf(`"use strict";
const Module = require("module");
const allowed = new Set(%s);
const load = Module._load;
Module._load = function (request, parent, isMain) {
  const name = request.replace(/^node:/, "").split("/")[0];
  if (isMain || request.startsWith(".") || request.startsWith("/") || allowed.has(name)) {
    return load.apply(this, arguments);
  }
  process.stderr.write(%q + name + "\n");
  const err = new Error("require of " + name + " is not allowed in this sandbox");
  err.code = "ERR_NODEX_DENIED";
  throw err;
};
`, list, DeniedImportPrefix)
}
