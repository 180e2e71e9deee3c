# Several mistakes in one file: every one of them must be reported.
workers = 0
listener "public" { address = "0.0.0.0:99999" }
upstream "app" {
  server "10.0.0.1:8080" { weight = 0 }
  balance = "fastest"
}
route "api" {
  upstream = "ap"
  path_prefix = "api/"
}
