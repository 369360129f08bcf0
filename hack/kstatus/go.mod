module tickwork.local/tools/kstatus

go 1.22

require sigs.k8s.io/cli-utils v0.37.2
