//go:build corpus

package corpus

// fullRun is true with the corpus build tag (`make corpus`): every item of
// every file runs.
const fullRun = true
