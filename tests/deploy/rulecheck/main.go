// Command rulecheck checks Prometheus rule files with Prometheus' own rulefmt (the parser and
// validation `promtool check rules` runs: syntax, PromQL, durations, templates) and prints every
// error; exit 1 if any. The module is v0.305.0, Prometheus 3.5.0 as in docker-compose.yml.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/rulefmt"
)

func main() {
	bad := false
	for _, f := range os.Args[1:] {
		_, errs := rulefmt.ParseFile(f, false)
		for _, e := range errs {
			fmt.Printf("%s: %v\n", f, e)
			bad = true
		}
	}
	if bad {
		os.Exit(1)
	}
}
