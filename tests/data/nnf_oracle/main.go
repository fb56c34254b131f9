// nnf_oracle reads each file named on the command line the way nnf-sos reads
// a fence response (DirEntry.IsDir, filepath.Ext, os.ReadFile, then
// encoding/json into the structs of its two checks) and prints one JSON line
// per file with what each check takes from it. The tests compare the agent's
// own view with it. Never give it a FIFO: like nnf-sos, it would block.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

type verdict struct {
	Path    string `json:"path"`
	Skipped string `json:"skipped,omitempty"`
	// checkComputeFenced: decoded, and the target it counts (if success).
	Compute       bool   `json:"compute"`
	ComputeTarget string `json:"compute_target"`
	// checkFencedStatus: decoded, success or status "success".
	Status       bool   `json:"status"`
	StatusTarget string `json:"status_target"`
}

func judge(path string) verdict {
	v := verdict{Path: path}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		v.Skipped = "directory"
		return v
	}
	if filepath.Ext(filepath.Base(path)) != ".json" {
		v.Skipped = "extension"
		return v
	}
	data, err := os.ReadFile(path)
	if err != nil {
		v.Skipped = "read: " + err.Error()
		return v
	}
	var a struct {
		TargetNode string `json:"target_node"`
		Success    bool   `json:"success"`
	}
	if err := json.Unmarshal(data, &a); err == nil {
		v.Compute = a.Success
		v.ComputeTarget = a.TargetNode
	}
	var b struct {
		TargetNode string `json:"target_node"`
		Success    bool   `json:"success"`
		Status     string `json:"status"`
	}
	if err := json.Unmarshal(data, &b); err == nil {
		v.Status = b.Success || b.Status == "success"
		v.StatusTarget = b.TargetNode
	}
	return v
}

func main() {
	enc := json.NewEncoder(os.Stdout)
	for _, p := range os.Args[1:] {
		if err := enc.Encode(judge(p)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
