# pingora-master as a Nomad service job (docker driver). Not run by the
# tests; deploy/deploy_test.go parses it and loads the rendered config with
# pingora-master -t.
#
#   nomad job run deploy/nomad/pingora.nomad.hcl
#
# Upgrades: change `image` and run the job again; the update block replaces
# one allocation at a time, each old one deregistered first (shutdown_delay),
# then drained (SIGTERM) within kill_timeout. Backends come from Nomad's
# service discovery: when the "app" service changes, the template re-renders
# and the task gets SIGHUP, a reload with no dropped request (a bad render is
# refused and changes nothing).

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
        ports = ["http"]
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

      resources {
        cpu    = 2000 # MHz
        memory = 256  # MiB
      }
    }
  }
}
