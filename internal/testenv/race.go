//go:build race

package testenv

// Race reports whether the test binary was built with -race. The race
// detector's shadow memory is anonymous memory of the process, so tests that
// bound the process's RssAnon skip under it.
const Race = true
