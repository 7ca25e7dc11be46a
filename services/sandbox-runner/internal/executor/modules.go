package executor

import (
	"encoding/json"
	"fmt"
)

// Module access control is policy and telemetry, not a boundary: Debian's
// python3 compiles _socket, posix and others into the binary, an import hook can
// be removed by the code it watches, and Node's permission model does not cover
// the network. The boundary is the namespaces, the mount view, seccomp and
// Landlock.
//
// The hooks below let a program import the standard library (built-in
// modules, for Node), its own files, and the modules its manifest lists.
// Sensitive standard modules (network, processes, foreign functions) must be
// listed too. Any other import through the normal path fails, and the hook
// reports it on stderr with DeniedImportPrefix, which the runner strips and
// turns into an event.

// sensitivePython and sensitiveNode are the standard modules that a program
// may import only when its manifest lists them.
var (
	sensitivePython = []string{"socket", "ssl", "socketserver", "http", "urllib", "ftplib",
		"smtplib", "poplib", "imaplib", "telnetlib", "xmlrpc", "subprocess", "pty", "ctypes",
		"multiprocessing", "asyncio", "selectors"}
	sensitiveNode = []string{"net", "tls", "http", "https", "http2", "dgram", "dns",
		"child_process", "cluster", "worker_threads", "inspector", "vm", "wasi"}
)

// DeniedImportPrefix starts the stderr line that reports a denied import.
const DeniedImportPrefix = "nodex-denied-import: "

// Files of the Node guard, written into /work beside the program.
const (
	nodeGuardFile    = ".nodex-guard.cjs"
	nodeRegisterFile = ".nodex-register.mjs"
	nodeHooksFile    = ".nodex-hooks.mjs"
)

// pythonGuard returns Python code that installs the import hook, for imports
// made from files under /work. Imports made by the standard library itself
// are left alone.
func pythonGuard(modules []string) string {
	if modules == nil {
		return ""
	}
	list, _ := json.Marshal(modules)
	sensitive, _ := json.Marshal(sensitivePython)
	return fmt.Sprintf(`import os
class _NodexGuard:
    allowed = frozenset(%s)
    sensitive = frozenset(%s)
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.allowed:
            return None
        if top in sys.stdlib_module_names and top not in self.sensitive:
            return None
        if os.path.exists("/work/" + top + ".py") or os.path.isdir("/work/" + top):
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
del _NodexGuard`, list, sensitive, DeniedImportPrefix)
}

// nodeGuard returns a CommonJS preload that allows require() of built-in
// modules that are not sensitive, of the listed modules, and of paths.
func nodeGuard(modules []string) string {
	list, _ := json.Marshal(modules)
	sensitive, _ := json.Marshal(sensitiveNode)
	return fmt.Sprintf(`"use strict";
const fs = require("fs");
const Module = require("module");
const allowed = new Set(%s);
const sensitive = new Set(%s);
const load = Module._load;
Module._load = function (request, parent, isMain) {
  const name = request.replace(/^node:/, "").split("/")[0];
  const builtin = Module.builtinModules.includes(name) && !sensitive.has(name);
  if (isMain || request.startsWith(".") || request.startsWith("/") || allowed.has(name) || builtin) {
    return load.apply(this, arguments);
  }
  fs.writeSync(2, %q + name + "\n");
  const err = new Error("require of " + name + " is not allowed in this sandbox");
  err.code = "ERR_NODEX_DENIED";
  throw err;
};
`, list, sensitive, DeniedImportPrefix)
}

// nodeRegister returns the ES module that --import loads to install the
// resolve hook for ES module imports.
func nodeRegister() string {
	return `import { register } from "node:module";
register("./` + nodeHooksFile + `", import.meta.url);
`
}

// nodeHooks returns the module resolve hook that allows import of built-in
// modules that are not sensitive, of the listed modules, of relative,
// absolute and file: specifiers, and anything the guard's own files import. It reports a denial with a direct write to
// descriptor 2, because Node runs the hooks on a separate thread.
func nodeHooks(modules []string) string {
	list, _ := json.Marshal(modules)
	sensitive, _ := json.Marshal(sensitiveNode)
	return fmt.Sprintf(`import { writeSync } from "node:fs";
import { builtinModules } from "node:module";
const allowed = new Set(%s);
const sensitive = new Set(%s);
const guardFiles = ["/%s", "/%s"];
export async function resolve(specifier, context, next) {
  const parent = context.parentURL || "";
  const name = specifier.replace(/^node:/, "").split("/")[0];
  const builtin = builtinModules.includes(name) && !sensitive.has(name);
  if (!parent || guardFiles.some((f) => parent.endsWith(f)) || /^(\.|\/|file:)/.test(specifier) ||
      allowed.has(name) || builtin) {
    return next(specifier, context);
  }
  writeSync(2, %q + name + "\n");
  const err = new Error("import of " + name + " is not allowed in this sandbox");
  err.code = "ERR_NODEX_DENIED";
  throw err;
}
`, list, sensitive, nodeRegisterFile, nodeHooksFile, DeniedImportPrefix)
}
