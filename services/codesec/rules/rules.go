// Package rules embeds codesec's static rule files, one per language
// (python.json, javascript.json, sh.json). Each rule carries its own
// positive and negative samples, which the scan package's tests run.
package rules

import "embed"

// FS contains the rule files.
//
//go:embed *.json
var FS embed.FS
