# pingora-master: a production example.
#
# Install as /etc/pingora/pingora.hcl (root-owned, mode 0640: workers never
# read it, the master hands them the parsed config). Check it with
#   pingora-master -t -c /etc/pingora/pingora.hcl
# and apply changes with `systemctl reload pingora-master` (or
# `pingora-master -s reload -c /etc/pingora/pingora.hcl`, or SIGHUP): a bad
# file changes nothing, the running workers keep serving.
#
# Every setting left out has the default documented in README.md. Durations
# are strings ("30s", "500ms"), sizes are bytes with an optional k, m or g
# suffix ("64k", "10m").

# --- Process ---------------------------------------------------------------

# The root master writes these; /run/pingora is created by systemd
# (RuntimeDirectory=) or tmpfiles.d (deploy/systemd/pingora.tmpfiles).
pid_file       = "/run/pingora/pingora.pid"
lock_file      = "/run/pingora/pingora.lock"    # instance lock, held for the master's life
control_socket = "/run/pingora/pingora.sock"    # what `-s reload|status|...` talks to (mode 0600)

# Workers run as this user and group (created by deploy/systemd/pingora.sysusers).
# They hold no capability, cannot setuid back to root, and are not dumpable.
user  = "pingora"
group = "pingora"

# Workers get TZ and only what is listed here of the environment ("NAME"
# passes the master's value, "NAME=value" sets one); root's stays with the
# master.
env = ["LANG=C.UTF-8"]

# Worker processes. The default is one per CPU; here it comes from the
# environment so that one file serves machines of different sizes
# (systemd: Environment=PINGORA_WORKERS=8, or /etc/default/pingora).
# The environment is read when the master starts; a reload re-reads it from
# the master's own environment, which systemd does not change: restart for that.
workers = env("PINGORA_WORKERS", "4")

# How long old workers may finish in-flight requests after a reload, upgrade
# or SIGTERM. The systemd unit's TimeoutStopSec (45s) is kept above it.
shutdown_timeout = "30s"
# A new generation (reload) or a new binary (upgrade) that is not serving
# within these is abandoned and the old one keeps serving.
reload_timeout  = "30s"
upgrade_timeout = "60s"
# A worker that leaves the master's heartbeat unanswered this long (hung,
# stopped) is killed and replaced; the systemd unit's WatchdogSec stays above
# twice this.
worker_heartbeat_timeout = "10s"

# systemd supervises the process (Type=notify): stay in the foreground.
# Started by hand or by a SysV script, use -d instead.
daemon = false

# --- Logs --------------------------------------------------------------------

# The master opens both files (as root) and hands them to the workers; SIGUSR1
# or `-s reopen` reopens them (deploy/logrotate/pingora).
log {
  file   = "/var/log/pingora/error.log"
  level  = "info" # trace debug info warn error
  format = "json" # text or json
}

# One JSON line per request. Leave the block out for no access log.
access_log {
  file           = "/var/log/pingora/access.log"
  buffer_size    = "64k"
  flush_interval = "1s"
}

limits {
  nofile = 65535 # the unit's LimitNOFILE must be at least this
  core   = "0"   # no core dumps
}

# Prometheus /metrics, JSON /status and the HTML status page, served by the
# master. Whoever can reach this address can read them: keep it on loopback
# or a management network.
admin {
  address = "127.0.0.1:9145"
}

# --- Listeners ---------------------------------------------------------------

# Bound once by the master and inherited by every generation of workers:
# never rebound, so no connection is refused during a reload or upgrade.
listener "public" {
  address               = "0.0.0.0:80"
  client_header_timeout = "15s"
  client_body_timeout   = "30s"
  send_timeout          = "30s" # a client that stops reading the response is cut
  keepalive_timeout     = "75s"
  max_body_size         = "10m" # larger request bodies get 413
  defer_accept          = true  # wake a worker only once a request's first bytes are in
  # With many workers: a socket per worker (SO_REUSEPORT), so a new
  # connection wakes one worker instead of all; changing it needs a restart.
  # reuseport           = true
}

# HTTPS, with certbot's files for example.com (README.md, "certbot / ACME":
# deploy/certbot/pingora-reload, its deploy hook, reloads after a renewal).
listener "https" {
  address = "0.0.0.0:443"
  # Same limits as "public": the routes below serve both.
  client_header_timeout = "15s"
  client_body_timeout   = "30s"
  send_timeout          = "30s"
  keepalive_timeout     = "75s"
  max_body_size         = "10m"
  defer_accept          = true
  # HTTP/2 is offered by ALPN (h2 first, then http/1.1) with http2 = true,
  # the default; one connection carries up to this many requests at once.
  max_concurrent_streams = 128
  tls {
    certificate {
      # Read by the master (root) at start and on every reload, never by
      # the workers: the key can stay root's only (certbot's mode 0600).
      # A reload after a renewal serves the new certificate to new
      # connections; one that cannot be read or does not match its key is
      # refused, and the old one keeps serving.
      cert_file = "/etc/letsencrypt/live/example.com/fullchain.pem"
      key_file  = "/etc/letsencrypt/live/example.com/privkey.pem"
    }
    # More certificate blocks serve other names, picked by SNI (the first is
    # the default).

    # TLS 1.2 and 1.3; "1.3" drops old clients.
    min_version = "1.2" # the default
    # Resumption by session tickets, under keys the master makes and rotates
    # hourly for every worker: a client resumes on any worker, and after a
    # reload.
    session_tickets = true # the default
  }
  # Behind a TCP load balancer that speaks the PROXY protocol, add
  # proxy_protocol = true and trusted_proxies = ["10.0.0.0/8"] so that
  # clients' own addresses are used. Behind one that ends TLS and speaks
  # cleartext HTTP/2 to its backends, add h2c = true to a plain listener.
}

# A second listener for load balancer health checks; bind it to the internal
# interface's address (e.g. "10.0.0.5:8081") to keep it off the internet.
listener "internal" {
  address = "0.0.0.0:8081"
}

# --- Upstreams ---------------------------------------------------------------

# The application servers. Smooth weighted round robin (as nginx).
upstream "app" {
  balance = "round_robin"

  server "10.0.1.10:8080" { weight = 2 }
  server "10.0.1.11:8080" {}
  # Passive marking as nginx: 3 failures within 10s take it out for 10s.
  server "10.0.1.12:8080" {
    max_fails    = 3
    fail_timeout = "10s"
  }
  # Used only when no primary server is healthy.
  server "10.0.1.20:8080" { backup = true }

  connect_timeout         = "2s"
  response_header_timeout = "30s"
  keepalive_conns         = 64 # idle connections kept per server
  retries                 = 2  # connect failures: any method; others: idempotent methods only

  health_check {
    path          = "/health"
    interval      = "2s"
    timeout       = "1s"
    healthy       = 2 # consecutive passes to mark a server up
    unhealthy     = 3 # consecutive failures to mark it down
    expect_status = [200]
  }
}

# Static assets: consistent hashing on the URI keeps each object on one cache
# server, and adding a server moves only about 1/N of them.
upstream "assets" {
  balance  = "hash"
  hash_key = "uri"

  server "assets-1.internal.example.com:8080" {}
  server "assets-2.internal.example.com:8080" {}

  health_check {
    path     = "/ping"
    interval = "5s"
  }
}

# certbot's own HTTP server (--standalone), for its http-01 challenges, which
# arrive on port 80: pingora-master holds the port and route "acme" passes
# them to certbot here, where its renewals listen once their settings have
# http01_port = 8402 and http01_address = 127.0.0.1 (README.md, "certbot /
# ACME"). No health check: certbot listens only while it runs; and a lone
# server is never taken out by passive marking, so the refused connections
# in between do not keep the next challenge from it.
upstream "acme" {
  server "127.0.0.1:8402" {}
  connect_timeout = "1s"
  retries         = 0
}

# --- Routes ------------------------------------------------------------------
# A request goes to the route of its listener with the matching host (exact,
# or "*.suffix") and the longest matching path_prefix; nothing matches: 404.

# Load balancer health checks, answered by the workers themselves: a 200 here
# means this machine's workers accept and serve.
route "health" {
  listeners   = ["public", "internal"]
  path_prefix = "/healthz"
  respond {
    status = 200
    body   = "ok\n"
  }
}

# Let's Encrypt's http-01 challenges, to certbot. A host's own routes are
# tried first: this one answers the hosts none of whose routes matches the
# path (here example.com and www.example.com, the certificate's names; a
# challenge for api.example.com would go to its "/" route).
route "acme" {
  listeners   = ["public"]
  path_prefix = "/.well-known/acme-challenge/"
  upstream    = "acme"
}

# The public API, rate limited per client address (429 with Retry-After).
# The limit is the machine's, all workers together (scope = "machine", the
# default); with several instances behind a load balancer, share it
# through Redis: store = "redis://10.0.0.9:6379/0" (scope "cluster").
route "api" {
  listeners   = ["public", "https"]
  host        = "api.example.com"
  path_prefix = "/"
  upstream    = "app"

  # X-Forwarded-For and X-Forwarded-Proto (http or https) are set by the
  # proxy itself.
  remove_request_headers = ["X-Internal-Debug"]
  response_headers = {
    "Strict-Transport-Security" = "max-age=31536000"
    "X-Content-Type-Options"    = "nosniff"
  }
  remove_response_headers = ["Server", "X-Powered-By"]

  rate_limit {
    requests = 100
    per      = "1s"
    burst    = 50
    key      = "client_ip" # or "header:X-Api-Key"
  }
}

# Uploads may be larger than the listener's 10m.
route "api-upload" {
  listeners     = ["public", "https"]
  host          = "api.example.com"
  path_prefix   = "/v1/upload/"
  upstream      = "app"
  max_body_size = "100m"
}

route "assets" {
  listeners        = ["public", "https"]
  host             = "*.example.com"
  path_prefix      = "/static/"
  upstream         = "assets"
  response_headers = { "Cache-Control" = "public, max-age=86400" }
}

# The web site: every other host and path.
route "www" {
  listeners        = ["public", "https"]
  upstream         = "app"
  response_headers = { "X-Served-By" = "pingora-master" }
}

# Retired host: a permanent redirect, answered without any upstream.
route "old-site" {
  listeners        = ["public", "https"]
  host             = "old.example.com"
  response_headers = { "Location" = "https://www.example.com/" }
  respond {
    status = 301
    body   = "Moved to https://www.example.com/\n"
  }
}
