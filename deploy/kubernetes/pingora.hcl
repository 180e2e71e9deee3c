# pingora-master on Kubernetes: the ConfigMap in pingora.yaml, which must
# hold this text exactly (deploy/cluster_test.go checks it).
#
# Logs go to stderr and the access log to stdout, where the platform
# collects them. The master runs as root inside the container and starts its
# workers as pingora, a user of their own (the image's /etc/passwd has it).

pid_file = "/run/pingora/pingora.pid"
user     = "pingora"

# Match the pod's CPU limit: the default (one worker per CPU) counts the
# node's CPUs, not the container's share.
workers = 2

# terminationGracePeriodSeconds (45) > preStop sleep (5) + shutdown_timeout.
shutdown_timeout = "30s"

log {
  level  = "info"
  format = "json"
}

access_log {
  file = "/dev/stdout"
}

listener "http" {
  address = "0.0.0.0:8080"
}

# HTTPS, HTTP/2 by ALPN. The certificate and key are the Secret pingora-tls
# (type kubernetes.io/tls), mounted read-only with mode 0400: the master
# reads them as root at start and on every reload; workers never open them.
# An updated Secret is served once the pod reloads (`-s reload`) or is
# replaced (pingora.yaml shows both).
listener "https" {
  address = "0.0.0.0:8443"
  tls {
    certificate {
      cert_file = "/etc/pingora/tls/tls.crt"
      key_file  = "/etc/pingora/tls/tls.key"
    }
  }
}

# The application behind this proxy, by its Service name: kube-proxy spreads
# the connections over the Service's pods.
upstream "app" {
  server "app.default.svc.cluster.local:8080" {}
  balance         = "least_conn"
  connect_timeout = "2s"
  retries         = 2
}

# Readiness and liveness probes: answered by the workers themselves.
route "health" {
  path_prefix = "/healthz"
  respond {
    status = 200
    body   = "ok\n"
  }
}

route "app" {
  upstream         = "app"
  response_headers = { "X-Served-By" = "pingora-master" }
}
