// Package rules embeds codesec's static rule files, one per language
// (python.json, javascript.json, sh.json). Each rule's positive and
// negative samples live in the scan package's testdata/samples, and its
// tests run them.
package rules

import "embed"

// FS contains the rule files.
//
//go:embed *.json
var FS embed.FS
