// argocd-lua evaluates ArgoCD resource health checks with ArgoCD's own Lua engine (argo-cd util/lua: the
// gopher-lua VM with only the base, table, package and safe os libraries open, the object as global `obj`,
// the returned table read as a gitops-engine HealthStatus), the way the application controller does.
//
// Input on stdin, JSON: {"data": <an argocd-cm ConfigMap's data>, "objects": [<object>, ...]}. Each
// `resource.customizations.health.<group>_<Kind>` key becomes the health override of <group>/<Kind>, as
// ArgoCD's settings read them. Output on stdout, JSON: one {"status", "message"} or {"error"} per object,
// in order; an object whose kind has no check gets {"error": "no health check"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const healthPrefix = "resource.customizations.health."

type input struct {
	Data    map[string]string `json:"data"`
	Objects []map[string]any  `json:"objects"`
}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "argocd-lua: cannot read the input: %v\n", err)
		os.Exit(2)
	}
	overrides := lua.ResourceHealthOverrides{}
	for key, script := range in.Data {
		if groupKind, ok := strings.CutPrefix(key, healthPrefix); ok {
			overrides[strings.Replace(groupKind, "_", "/", 1)] = v1alpha1.ResourceOverride{HealthLua: script}
		}
	}
	results := make([]result, 0, len(in.Objects))
	for _, object := range in.Objects {
		status, err := overrides.GetResourceHealth(&unstructured.Unstructured{Object: object})
		switch {
		case err != nil:
			results = append(results, result{Error: err.Error()})
		case status == nil:
			results = append(results, result{Error: "no health check"})
		default:
			results = append(results, result{Status: string(status.Status), Message: status.Message})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "argocd-lua: %v\n", err)
		os.Exit(1)
	}
}
