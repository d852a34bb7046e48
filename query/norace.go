//go:build !race

package query

const raceBuild = false
