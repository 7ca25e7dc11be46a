// Package domain holds the keyvault's pure types and rules: key names,
// provider key formats, key versions and their lifecycle, and the redacting
// secret type. It does no I/O.
package domain
