package keyvault

// Dumpable exposes the process's dumpable flag to tests.
var Dumpable = dumpable
