package main

import "syscall"

// int80Getpid is implemented in int80_amd64.s.
func int80Getpid() int64

func int80Case() error {
	if r := int80Getpid(); r < 0 {
		return syscall.Errno(-r)
	}
	return nil
}
