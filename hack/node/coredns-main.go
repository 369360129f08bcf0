// CoreDNS for the real node of the test cluster, with only the plugins its Corefile uses
// (hack/node.sh writes the Corefile). hack/build-binaries.sh copies this file into the
// wrapper module that requires github.com/coredns/coredns and builds it: the full plugin
// list would also compile the cloud providers' SDKs, for nothing.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The plugins' order in a server block, as in CoreDNS's own plugin.cfg.
	dnsserver.Directives = []string{"bind", "ready", "errors", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
