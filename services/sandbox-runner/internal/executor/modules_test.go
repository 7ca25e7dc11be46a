package executor

import (
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

func TestModuleGuards(t *testing.T) {
	e := newTestExecutor(t, 1)
	tests := []struct {
		name, runtime, file, code string
		modules                   []string
		wantDenied                string // module reported as denied; "" when the run must pass
	}{
		{"python standard", RuntimePython, "m.py", "import json, math\nprint(json.dumps(math.pi))", []string{}, ""},
		{"python listed", RuntimePython, "m.py", "import socket", []string{"socket"}, ""},
		{"python sensitive", RuntimePython, "m.py", "import json\nimport socket", []string{}, "socket"},
		{"python unknown", RuntimePython, "m.py", "import requests", []string{}, "requests"},
		{"node require builtin", RuntimeNode, "m.js", "console.log(require('path').sep)", []string{}, ""},
		{"node require sensitive", RuntimeNode, "m.js", "require('net')", []string{}, "net"},
		{"node import builtin", RuntimeNode, "m.mjs", "import path from 'node:path';\nconsole.log(path.sep)",
			[]string{}, ""},
		{"node import sensitive", RuntimeNode, "m.mjs", "import net from 'node:net';\nconsole.log(net)",
			[]string{}, "net"},
		{"node import listed", RuntimeNode, "m.mjs", "import net from 'node:net';\nconsole.log(typeof net)",
			[]string{"net"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := runSpec(t, e, Spec{Runtime: tt.runtime, Entrypoint: tt.file, Modules: tt.modules,
				Files: []proto.File{{Path: tt.file, Data: []byte(tt.code)}}})
			t.Logf("run took %v", time.Since(start))
			denied := strings.Contains(string(res.Stderr), DeniedImportPrefix+tt.wantDenied+"\n")
			switch {
			case tt.wantDenied == "" && (res.ExitCode != 0 || strings.Contains(string(res.Stderr), DeniedImportPrefix)):
				t.Errorf("got exit %d, stderr %q; want a clean run", res.ExitCode, res.Stderr)
			case tt.wantDenied != "" && (!denied || res.ExitCode == 0):
				t.Errorf("got exit %d, stderr %q; want %s denied", res.ExitCode, res.Stderr, tt.wantDenied)
			}
		})
	}
}
