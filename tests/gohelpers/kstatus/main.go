// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils status.Compute, the library Flux's
// health checks use) for each Kubernetes object read as JSON on stdin: one object, a List (`kubectl get
// -o json`), or several of either one after another. One JSON line per object is written to stdout:
// {"kind", "namespace", "name", "status", "message"}.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	out := json.NewEncoder(os.Stdout)
	dec := json.NewDecoder(os.Stdin)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			fail(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil { // numbers as int64, as client-go decodes them
			fail(err)
		}
		objects := []unstructured.Unstructured{*u}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				fail(err)
			}
			objects = list.Items
		}
		for i := range objects {
			res, err := status.Compute(&objects[i])
			if err != nil {
				fail(err)
			}
			o := objects[i]
			if err := out.Encode(verdict{o.GetKind(), o.GetNamespace(), o.GetName(), res.Status.String(), res.Message}); err != nil {
				fail(err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
