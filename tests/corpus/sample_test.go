//go:build !corpus

package corpus

// fullRun is false without the corpus build tag: the test runs the fixed
// sample that sampleItems picks from every file.
const fullRun = false
