// Command argocd-health runs the Argo CD health checks under a resource_customizations folder
// (`<group>/<kind>/health.lua` with `health_test.yaml` and `testdata/`) under gopher-lua, the
// interpreter Argo CD embeds, and fails when a case gets another health than it expects.
//
//	argocd-health DIR
//
// It prints one line per case and closes with "N passed, N failed". Exit status: 0 when every
// case passed, 1 when one failed, 2 when the folder could not be read.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: argocd-health RESOURCE_CUSTOMIZATIONS_DIR")
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	passed, failed, err := run(flag.Arg(0), os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(2)
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// run checks every case of every health check under root, reporting each to out.
func run(root string, out io.Writer) (passed, failed int, err error) {
	customizations, err := findCustomizations(root)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range customizations {
		for _, tc := range c.cases {
			if problem := check(c, tc); problem != "" {
				failed++
				fmt.Fprintf(out, "FAIL %s %s\n%s\n", c.name, tc.InputPath, problem)
			} else {
				passed++
				fmt.Fprintf(out, "ok   %s %s: %s\n", c.name, tc.InputPath, tc.HealthStatus)
			}
		}
		unused, err := c.unusedTestdata()
		if err != nil {
			return passed, failed, err
		}
		for _, path := range unused {
			failed++
			fmt.Fprintf(out, "FAIL %s %s\n     no case in health_test.yaml reads it: add one, or remove the file\n", c.name, path)
		}
	}
	return passed, failed, nil
}

// check runs one case; it returns what went wrong, or "" when the health is the expected one.
func check(c customization, tc testCase) string {
	resource, err := readResource(filepath.Join(c.dir, tc.InputPath))
	if err != nil {
		return "     " + err.Error()
	}
	got, err := evaluate(c.script, resource)
	if err != nil {
		return "     " + err.Error()
	}
	if got != tc.HealthStatus {
		return fmt.Sprintf("     want: %s\n     got:  %s", tc.HealthStatus, got)
	}
	return ""
}
