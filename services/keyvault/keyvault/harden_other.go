//go:build !linux

package keyvault

import "errors"

// hardenProcess fails on systems where the keyvault cannot stop core dumps
// and debugger attachment, so it never runs unprotected.
func hardenProcess() error {
	return errors.New("keyvault: process hardening is implemented for Linux only")
}

func dumpable() (bool, error) { return true, nil }
