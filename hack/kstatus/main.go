// kstatus prints the kstatus status (sigs.k8s.io/cli-utils/pkg/kstatus/status) of every
// object in a Kubernetes List read from stdin (`kubectl get bgw -o json | kstatus`), one
// line per object: "NAME STATUS MESSAGE". It is how Flux, Argo CD-style tools and
// cli-utils read readiness; tests/e2e use it on real BackgroundWorkers. Exit 1 on bad input.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading stdin: %v\n", err)
		os.Exit(1)
	}
	// Decoded as the API machinery does (integers stay int64, as kstatus expects).
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(data); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: stdin is not a JSON List (kind: List): %v\n", err)
		os.Exit(1)
	}
	for i := range list.Items {
		obj := &list.Items[i]
		result, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", obj.GetName(), err)
			os.Exit(1)
		}
		fmt.Printf("%s %s %s\n", obj.GetName(), result.Status, result.Message)
	}
}
