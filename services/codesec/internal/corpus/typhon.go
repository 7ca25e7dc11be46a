package corpus

import (
	"slices"
	"strings"
)

// TyphonSlots are the values that fill the Typhon template slots. Slots
// that are only scaffolding (names, a file in the work dir) get neutral
// values, so a finding on a filled template comes from the payload itself.
// Slots for the attacker's goal get the usual goal: the command "id" run
// through /bin/sh.
var TyphonSlots = map[string]string{
	"RANDOMSTRING":                "'nodex'",
	"RANDOMVARNAME":               "nodex_var",
	"RANDOMINT":                   "7",
	"BUILTINS_SET":                "builtins.__dict__",
	"MODULE_BUILTINS":             "builtins",
	"COMMAND":                     "'id'",
	"CMD":                         "'id'",
	"CMD_FILE":                    "'/bin/sh'",
	"UNFOLD_CMD_ARGS":             "'-c', 'id'",
	"FILECONTENTSTRING":           "open('flag.txt').read()",
	"FILECONTENTSIO":              "open('flag.txt')",
	"GENERATOR":                   "(nodex_g for nodex_g in ()).gi_frame",
	"BUILTINOBJ":                  "()",
	"OBJECT":                      "object",
	"TYPE":                        "type",
	"USER_DEFINED_CLASS":          "NodexClass",
	"USER_DEFINED_FUNCTION":       "nodex_function",
	"USER_DEFINED_LAMBDA":         "nodex_lambda",
	"TRUE":                        "True",
	"EXCEPTION_ZERODIVISIONERROR": "ZeroDivisionError",
}

// slotNames are the TyphonSlots keys, longest first, so CMD_FILE is
// replaced before CMD. Plain replacement also fills slots glued to a
// prefix, as in bCMD_FILE, which becomes the bytes literal b'/bin/sh'.
var slotNames = func() []string {
	names := make([]string, 0, len(TyphonSlots))
	for name := range TyphonSlots {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })

	return names
}()

// typhonModules are the required names in the Typhon data that are
// importable modules rather than builtins or slots.
var typhonModules = []string{"_aix_support", "_posixsubprocess", "code", "codecs", "ctypes",
	"doctest", "importlib", "io", "linecache", "multiprocessing", "os", "pdb", "profile", "pty",
	"pydoc", "subprocess", "sys", "timeit", "uuid"}

// FillTyphon makes a complete program of a Typhon template: it imports
// builtins (for the builtins slots) and each required module, then replaces
// every slot with its [TyphonSlots] value.
func FillTyphon(template, required string) string {
	var b strings.Builder
	b.WriteString("import builtins\n")
	for _, name := range strings.Split(required, ",") {
		if name = strings.TrimSpace(name); slices.Contains(typhonModules, name) {
			b.WriteString("import " + name + "\n")
		}
	}
	if strings.Contains(template, "CDLL") && !strings.Contains(required, "ctypes") {
		b.WriteString("import ctypes\n")
	}

	body := template
	for _, slot := range slotNames {
		body = strings.ReplaceAll(body, slot, TyphonSlots[slot])
	}
	b.WriteString(body + "\n")

	return b.String()
}
