// Package deploy holds no code: it is the directory of operator files for
// pingora-master (the production config example, the systemd unit with its
// sysusers.d and tmpfiles.d files, logrotate, the Dockerfile, Kubernetes and
// Nomad manifests, and the benchmark template and script). Its tests check
// those files against the real binary and the real system tools, so that an
// example that no longer loads, or a unit systemd would reject, fails CI
// rather than an operator's first deployment.
package deploy
