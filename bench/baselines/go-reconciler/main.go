// A minimal controller-runtime reconciler doing what the Tickwork operator does at its core:
// BackgroundWorker (tickwork.dev/v1alpha1) -> an owned Deployment, by server-side apply.
// It is the Go baseline of bench/bench_operator.py (issue 14): default controller-runtime
// settings (one reconcile at a time, the client's default QPS and burst), no status writes,
// no Events, no leader election. Flags: --namespace (watch only it), --metrics-bind-address.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

var workerGVK = schema.GroupVersionKind{Group: "tickwork.dev", Version: "v1alpha1", Kind: "BackgroundWorker"}

const fieldOwner = "tickwork-go-baseline"

type reconciler struct{ client.Client }

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	worker := &unstructured.Unstructured{}
	worker.SetGroupVersionKind(workerGVK)
	if err := r.Get(ctx, req.NamespacedName, worker); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // deleted: garbage collection removes the Deployment
		}
		return ctrl.Result{}, err
	}
	image, _, _ := unstructured.NestedString(worker.Object, "spec", "image")
	target, _, _ := unstructured.NestedString(worker.Object, "spec", "worker")
	replicas, found, _ := unstructured.NestedInt64(worker.Object, "spec", "replicas")
	if !found {
		replicas = 1
	}
	count := int32(replicas)
	selector := map[string]string{
		"app.kubernetes.io/name":     "tickwork-worker",
		"app.kubernetes.io/instance": worker.GetName(),
	}
	controller, block := true, true
	deployment := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      worker.GetName(),
			Namespace: worker.GetNamespace(),
			Labels:    selector,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: workerGVK.GroupVersion().String(), Kind: workerGVK.Kind,
				Name: worker.GetName(), UID: worker.GetUID(),
				Controller: &controller, BlockOwnerDeletion: &block,
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &count,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: selector},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "worker", Image: image, Args: []string{"run", target},
				}}},
			},
		},
	}
	//nolint:staticcheck // client.Apply with a typed object: the form every controller-runtime release accepts
	err := r.Patch(ctx, deployment, client.Apply, client.FieldOwner(fieldOwner), client.ForceOwnership)
	return ctrl.Result{}, err
}

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace (default: all)")
	metricsAddr := flag.String("metrics-bind-address", "0", "metrics address; 0 disables")
	flag.Parse()
	options := ctrl.Options{Metrics: metricsserver.Options{BindAddress: *metricsAddr}}
	if *namespace != "" {
		options.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}}
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), options)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
	worker := &unstructured.Unstructured{}
	worker.SetGroupVersionKind(workerGVK)
	err = ctrl.NewControllerManagedBy(mgr).For(worker).Owns(&appsv1.Deployment{}).
		Complete(&reconciler{Client: mgr.GetClient()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}
