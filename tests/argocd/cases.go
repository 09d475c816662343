package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"sigs.k8s.io/yaml"
)

// A folder of Argo CD's resource-customization layout, `<group>/<kind>/`, holding a health
// check and its test cases.
type customization struct {
	dir    string // on disk
	name   string // `<group>/<kind>`, relative to the resource_customizations folder
	script string // health.lua
	cases  []testCase
}

// health_test.yaml, in Argo CD's format.
type testFile struct {
	Tests []testCase `json:"tests"`
}

// One case: the resource in inputPath (relative to the folder) must have this health.
type testCase struct {
	InputPath    string `json:"inputPath"`
	HealthStatus Health `json:"healthStatus"`
}

// findCustomizations returns every folder under root that holds a health.lua, sorted.
func findCustomizations(root string) ([]customization, error) {
	var found []customization
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "health.lua" {
			return nil
		}
		c, err := loadCustomization(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		found = append(found, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no health.lua under %s: give the resource_customizations folder", root)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].name < found[j].name })
	return found, nil
}

func loadCustomization(root, dir string) (customization, error) {
	name, err := filepath.Rel(root, dir)
	if err != nil {
		return customization{}, err
	}
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return customization{}, err
	}
	testsPath := filepath.Join(dir, "health_test.yaml")
	text, err := os.ReadFile(testsPath)
	if err != nil {
		return customization{}, fmt.Errorf("%s has a health.lua but its test cases cannot be read: %w", dir, err)
	}
	var tests testFile
	// Strict, so a misspelt key (`healthstatus`) is an error rather than an empty expectation.
	if err := yaml.UnmarshalStrict(text, &tests); err != nil {
		return customization{}, fmt.Errorf("%s is not in Argo CD's test format (tests: [{healthStatus: {status, message}, inputPath}]): %w", testsPath, err)
	}
	if len(tests.Tests) == 0 {
		return customization{}, fmt.Errorf("%s lists no tests", testsPath)
	}
	for i, tc := range tests.Tests {
		if tc.InputPath == "" || tc.HealthStatus.Status == "" {
			return customization{}, fmt.Errorf("%s: test %d needs an inputPath and a healthStatus.status", testsPath, i+1)
		}
	}
	return customization{dir: dir, name: filepath.ToSlash(name), script: string(script), cases: tests.Tests}, nil
}

// readResource reads a test case's resource, as Argo CD's tests do: YAML through JSON.
func readResource(path string) (map[string]any, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var resource map[string]any
	if err := yaml.Unmarshal(text, &resource); err != nil {
		return nil, fmt.Errorf("%s is not a YAML object: %w", path, err)
	}
	return resource, nil
}

// unusedTestdata names the files under testdata/ that no case reads: a branch someone meant
// to cover and did not.
func (c customization) unusedTestdata() ([]string, error) {
	used := map[string]bool{}
	for _, tc := range c.cases {
		used[filepath.Clean(tc.InputPath)] = true
	}
	var unused []string
	err := filepath.WalkDir(filepath.Join(c.dir, "testdata"), func(path string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(c.dir, path)
		if err != nil {
			return err
		}
		if !used[rel] {
			unused = append(unused, filepath.ToSlash(rel))
		}
		return nil
	})
	return unused, err
}
