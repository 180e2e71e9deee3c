# pingora-master as a Nomad service job (docker driver). Not run by the
# tests; deploy/cluster_test.go parses it and loads the rendered config (and
# certificate) with pingora-master -t.
#
#   nomad job run deploy/nomad/pingora.nomad.hcl
#
# Upgrades: change `image` and run the job again; the update block replaces
# one allocation at a time, each old one deregistered first (shutdown_delay),
# then drained (SIGTERM) within kill_timeout. Backends come from Nomad's
# service discovery: when the "app" service changes, the template re-renders
# and the task gets SIGHUP, a reload with no dropped request (a bad render is
# refused and changes nothing).
#
# HTTPS: the certificate and key are the items cert and key of the Nomad
# variable nomad/jobs/pingora/proxy/pingora (the task's own path, which it
# may read without an ACL policy), put there by whatever renews them:
#   nomad var put nomad/jobs/pingora/proxy/pingora cert=@fullchain.pem key=@privkey.pem
# Nomad renders them into secrets/ and sends SIGHUP: the reload serves the
# new certificate to new connections (one that does not match its key is
# refused, and the old one keeps serving). With Vault, the same templates
# can read a PKI role instead ({{ with secret "pki/issue/pingora" ... }}).

job "pingora" {
  type = "service"

  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "proxy" {
    count = 3

    network {
      port "http" {
        static = 8080
      }
      port "https" {
        static = 8443
      }
    }

    service {
      name     = "pingora"
      port     = "http"
      provider = "nomad"

      # The "health" route, answered by the workers themselves.
      check {
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "pingora" {
      driver = "docker"

      config {
        image = "registry.example.com/pingora-master:1.0.0" # from deploy/docker/Dockerfile
        ports = ["http", "https"]
        # The template below is rendered into the task's local/ directory,
        # mounted at /local in the container.
        args = ["-c", "/local/pingora.hcl"]
      }

      # Deregistered from the service first, then this long before SIGTERM,
      # so that no new connection is sent to a draining proxy.
      shutdown_delay = "5s"
      # SIGTERM: graceful stop; SIGKILL after kill_timeout. Keep kill_timeout
      # above shutdown_timeout in the config, and no higher than the clients'
      # max_kill_timeout (30s by default), which caps it.
      kill_signal  = "SIGTERM"
      kill_timeout = "28s"

      template {
        destination   = "local/pingora.hcl"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        # Go template delimiters are {{ }}; the pingora config uses no ${}.
        data = <<-EOF
          pid_file         = "/run/pingora/pingora.pid"
          user             = "pingora" # in the image's /etc/passwd
          workers          = 2 # resources.cpu: two cores' worth
          shutdown_timeout = "20s"

          log {
            format = "json"
          }

          access_log {
            file = "/dev/stdout"
          }

          listener "http" {
            address = "0.0.0.0:{{ env "NOMAD_PORT_http" }}"
          }

          # HTTP/2 by ALPN. The master reads the files (root) at start and
          # on every reload; workers never open them.
          listener "https" {
            address = "0.0.0.0:{{ env "NOMAD_PORT_https" }}"
            tls {
              certificate {
                cert_file = "/secrets/tls.crt"
                key_file  = "/secrets/tls.key"
              }
            }
          }

          # Every instance of the "app" service. With none, the upstream has
          # no server and the config is refused (a reload keeps the old one).
          upstream "app" {
            balance = "least_conn"
          {{- range nomadService "app" }}
            server "{{ .Address }}:{{ .Port }}" {}
          {{- end }}
          }

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
        EOF
      }

      # The certificate and key, in the task's secrets/ directory (mounted at
      # /secrets, private to the task), readable by root only. A change is a
      # reload, as for the config. Nomad renders every template before it
      # starts the task, so the master starts with them. Were a reload ever
      # to see the new certificate beside the old key, it would be refused
      # (the old pair keeps serving) and the other file's SIGHUP applies both.
      template {
        destination   = "secrets/tls.crt"
        perms         = "0600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOF
          {{- with nomadVar "nomad/jobs/pingora/proxy/pingora" }}{{ .cert }}{{ end }}
        EOF
      }
      template {
        destination   = "secrets/tls.key"
        perms         = "0600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOF
          {{- with nomadVar "nomad/jobs/pingora/proxy/pingora" }}{{ .key }}{{ end }}
        EOF
      }

      resources {
        cpu    = 2000 # MHz
        memory = 256  # MiB
      }
    }
  }
}
