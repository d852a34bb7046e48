//go:build race

package node_test

// raceEnabled: the SQL worker runs without RLIMIT_AS under the race
// detector (query.raceBuild), so memory bombs are not stopped by it.
const raceEnabled = true
